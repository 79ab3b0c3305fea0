##! Which process and which user is behind each connection: ``@load osquery/attribution``.
##!
##! For every TCP and UDP connection the framework asks collectord (``attribute_v1``): once when
##! Zeek learns of it (TCP: established; UDP: its first packet) and once when it is removed.
##! collectord answers each question with ``attribution_v1``: per side the host, process and user
##! behind that end, how they were matched, or why not (docs/attribution.md).
##!
##! - An answer to the first question that arrives before the connection is logged fills
##!   conn.log's ``orig_host_id``, ``orig_pid``, ``orig_path``, ``orig_user`` and the ``resp_``
##!   fields.
##! - The answer to the second question always goes to osq-attribution.log, keyed by ``uid``,
##!   and raises ``osquery::connection_attributed`` (even when it comes after conn.log was
##!   written).
##!
##! On a cluster, load this where the connections are (a standalone Zeek, or the node collectord
##! is connected to): the answers arrive on the node that holds the WebSocket listener.

@load base/protocols/conn
@load base/misc/version
@load osquery

# Before Zeek 6.0 osquery's __load__ stops Zeek with one clear error (and Zeek has no community_id_v1).
@if ( Version::number >= 60000 )
module osquery;

export {
	redef enum Log::ID += { LOG_ATTRIBUTION };

	## One side of a connection as collectord attributed it (every field optional: a side
	## that could not be attributed has a ``reason`` and what is known anyway).
	type AttributionSide: record {
		host_id: string &optional; ##< the agent's host id
		hostname: string &optional;
		pid: int &optional;
		path: string &optional; ##< the process's executable
		cmdline: string &optional;
		user_id: int &optional;
		user: string &optional;
		parent: int &optional;
		container: string &optional;
		match: string &optional; ##< socket_event, socket_event_time, open_socket, listening_port, bind_event
		reason: string &optional; ##< no_agent, no_socket, process_gone, ambiguous
		candidates: vector of string &optional; ##< the hosts or processes that made it ambiguous
	};

	## osq-attribution.log: one record per connection, keyed by uid.
	type AttributionInfo: record {
		ts: time &log;
		uid: string &log;
		id: conn_id &log;
		proto: transport_proto &log;
		community_id: string &log &optional;
		orig_host_id: string &log &optional;
		orig_hostname: string &log &optional;
		orig_pid: int &log &optional;
		orig_path: string &log &optional;
		orig_cmdline: string &log &optional;
		orig_user_id: int &log &optional;
		orig_user: string &log &optional;
		orig_parent: int &log &optional;
		orig_container: string &log &optional;
		orig_match: string &log &optional;
		orig_reason: string &log &optional;
		orig_candidates: vector of string &log &optional;
		resp_host_id: string &log &optional;
		resp_hostname: string &log &optional;
		resp_pid: int &log &optional;
		resp_path: string &log &optional;
		resp_cmdline: string &log &optional;
		resp_user_id: int &log &optional;
		resp_user: string &log &optional;
		resp_parent: int &log &optional;
		resp_container: string &log &optional;
		resp_match: string &log &optional;
		resp_reason: string &log &optional;
		resp_candidates: vector of string &log &optional;
	};

	## Ask when a connection starts too (not only when it is removed), so conn.log can carry
	## the answer.
	const attribute_on_start: bool = T &redef;
	## How long a question waits for its answer (and an early answer for its connection).
	const attribution_timeout: interval = 5 min &redef;

	## Framework -> collectord, on ``collector_topic``.
	global attribute_v1: event(zeek_id: string, uid: string, ts: time, orig_h: addr,
	    orig_p: port, resp_h: addr, resp_p: port, community_id: string, final: bool);
	## collectord -> framework, on ``zeek_topic``: the answer to ``attribute_v1``.
	global attribution_v1: event(uid: string, final: bool, orig: AttributionSide,
	    resp: AttributionSide) &is_used;

	## Raised for every connection attributed at its end (what osq-attribution.log records).
	global connection_attributed: event(info: AttributionInfo);
	## Raised before each osq-attribution.log write.
	global log_attribution: event(rec: AttributionInfo);
}

redef record Conn::Info += {
	orig_host_id: string &log &optional;
	orig_pid: int &log &optional;
	orig_path: string &log &optional;
	orig_user: string &log &optional;
	resp_host_id: string &log &optional;
	resp_pid: int &log &optional;
	resp_path: string &log &optional;
	resp_user: string &log &optional;
};

type AnswerPair: record {
	orig: AttributionSide;
	resp: AttributionSide;
};

# Early answers, until their connection is logged.
global early_answers: table[string] of AnswerPair &create_expire=attribution_timeout;
# Connections asked about at their end, until the answer is logged.
global final_questions: table[string] of AttributionInfo &create_expire=attribution_timeout;

event zeek_init() &priority=5
	{
	Log::create_stream(osquery::LOG_ATTRIBUTION, [$columns=AttributionInfo,
	    $ev=log_attribution, $path="osq-attribution"]);
	}

function attributable(c: connection): bool
	{
	local proto = get_port_transport_proto(c$id$resp_p);
	return proto == tcp || proto == udp;
	}

function ask(c: connection, final: bool)
	{
	publish_event(collector_topic, attribute_v1, zeek_id, c$uid, c$start_time,
	    c$id$orig_h, c$id$orig_p, c$id$resp_h, c$id$resp_p, community_id_v1(c$id), final);
	}

event connection_established(c: connection)
	{
	if ( attribute_on_start )
		ask(c, F);
	}

event new_connection(c: connection)
	{
	if ( attribute_on_start && get_port_transport_proto(c$id$resp_p) == udp )
		ask(c, F);
	}

# After conn's set_conn (priority 5), before conn.log is written (priority -5).
event connection_state_remove(c: connection) &priority=-3
	{
	if ( ! attributable(c) )
		return;
	if ( c$uid in early_answers )
		{
		local a = early_answers[c$uid];
		delete early_answers[c$uid];
		if ( a$orig?$host_id )
			c$conn$orig_host_id = a$orig$host_id;
		if ( a$orig?$pid )
			c$conn$orig_pid = a$orig$pid;
		if ( a$orig?$path )
			c$conn$orig_path = a$orig$path;
		if ( a$orig?$user )
			c$conn$orig_user = a$orig$user;
		if ( a$resp?$host_id )
			c$conn$resp_host_id = a$resp$host_id;
		if ( a$resp?$pid )
			c$conn$resp_pid = a$resp$pid;
		if ( a$resp?$path )
			c$conn$resp_path = a$resp$path;
		if ( a$resp?$user )
			c$conn$resp_user = a$resp$user;
		}
	final_questions[c$uid] = AttributionInfo($ts=c$start_time, $uid=c$uid, $id=c$id,
	    $proto=get_port_transport_proto(c$id$resp_p), $community_id=community_id_v1(c$id));
	ask(c, T);
	}

function fill_orig(info: AttributionInfo, s: AttributionSide)
	{
	if ( s?$host_id ) info$orig_host_id = s$host_id;
	if ( s?$hostname ) info$orig_hostname = s$hostname;
	if ( s?$pid ) info$orig_pid = s$pid;
	if ( s?$path ) info$orig_path = s$path;
	if ( s?$cmdline ) info$orig_cmdline = s$cmdline;
	if ( s?$user_id ) info$orig_user_id = s$user_id;
	if ( s?$user ) info$orig_user = s$user;
	if ( s?$parent ) info$orig_parent = s$parent;
	if ( s?$container ) info$orig_container = s$container;
	if ( s?$match ) info$orig_match = s$match;
	if ( s?$reason ) info$orig_reason = s$reason;
	if ( s?$candidates ) info$orig_candidates = s$candidates;
	}

function fill_resp(info: AttributionInfo, s: AttributionSide)
	{
	if ( s?$host_id ) info$resp_host_id = s$host_id;
	if ( s?$hostname ) info$resp_hostname = s$hostname;
	if ( s?$pid ) info$resp_pid = s$pid;
	if ( s?$path ) info$resp_path = s$path;
	if ( s?$cmdline ) info$resp_cmdline = s$cmdline;
	if ( s?$user_id ) info$resp_user_id = s$user_id;
	if ( s?$user ) info$resp_user = s$user;
	if ( s?$parent ) info$resp_parent = s$parent;
	if ( s?$container ) info$resp_container = s$container;
	if ( s?$match ) info$resp_match = s$match;
	if ( s?$reason ) info$resp_reason = s$reason;
	if ( s?$candidates ) info$resp_candidates = s$candidates;
	}

event attribution_v1(uid: string, final: bool, orig: AttributionSide, resp: AttributionSide)
	{
	if ( ! final )
		{
		early_answers[uid] = AnswerPair($orig=orig, $resp=resp);
		return;
		}
	if ( uid !in final_questions )
		return; # not asked here, or answered already
	local info = final_questions[uid];
	delete final_questions[uid];
	fill_orig(info, orig);
	fill_resp(info, resp);
	Log::write(osquery::LOG_ATTRIBUTION, info);
	event osquery::connection_attributed(info);
	}
@endif
