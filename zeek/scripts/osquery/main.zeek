##! zeek-osquery's API (``module osquery``): subscribe, unsubscribe, execute, join, leave and
##! their ``_multiple`` variants, the ``Query`` and ``ResultInfo`` records, the
##! ``host_connected``/``host_disconnected`` events and the ``osquery.log`` and
##! ``osquery_hosts.log`` streams, as zeek-osquery's framework (v0.3.7) declared them.
##!
##! Requests do not go to hosts directly: they go to collectord (see collector.zeek), which keeps
##! them, pushes them to the hosts it serves and sends every result row back as the event the
##! query names: ``ev(resultInfo: osquery::ResultInfo, <one parameter per column>)``.

@load base/frameworks/logging

module osquery;

export {
	## osquery.log: the framework's own messages.
	redef enum Log::ID += { LOG };
	## osquery_hosts.log: every request sent towards hosts (subscribe, execute, join, ...).
	redef enum Log::ID += { LOG_SEND };

	## Default interval (seconds) of a subscription whose ``$inter`` is unset.
	const DEFAULT_INTERVAL: count = 10 &redef;
	## Interval (seconds) of the pre-written table scripts, as zeek-osquery-queries had it.
	const QUERY_INTERVAL: count = 2 &redef;

	## Which rows of a subscription are reported.
	type UpdateType: enum {
		ADD, ##< added rows only
		REMOVE, ##< removed rows only
		BOTH, ##< added and removed rows
		SNAPSHOT ##< the whole result (one-time queries; subscriptions report it as BOTH)
	};

	## A query, as zeek-osquery's scripts build it.
	type Query: record {
		## The SQL.
		query: string;
		## Which rows to report.
		utype: UpdateType &default=ADD;
		## Interval in seconds (DEFAULT_INTERVAL when unset).
		inter: count &optional;
		## The result topic of the original Broker protocol: accepted and ignored.
		resT: string &default="";
		## The event to raise per result row: ``ev(resultInfo: ResultInfo, col1, ...)``.
		ev: any &optional;
		## Handed back in every row's ResultInfo.
		cookie: string &default="";
	};

	## First argument of every result event.
	type ResultInfo: record {
		## The host's id (stable across agent restarts and reinstalls).
		host: string;
		## ADD or REMOVE for a subscription's differential rows, SNAPSHOT for one-time results.
		utype: UpdateType;
		## The query's cookie.
		cookie: string &optional;
	};

	## A subscription as the framework keeps it.
	type Subscription: record {
		query: Query;
		hosts: vector of string;
		groups: vector of string;
	};

	## A subnet group made with ``join``.
	type Grouping: record {
		group: string;
		ranges: vector of subnet;
	};

	## Columns of osquery.log and osquery_hosts.log.
	type Info: record {
		ts: time &log;
		## "local" (this Zeek), "collector" or "host".
		source: string &log;
		## The collector or host concerned.
		peer: string &log &optional;
		level: string &log &optional;
		message: string &log;
	};

	## Raised when a host connects (to collectord, which tells Zeek).
	global host_connected: event(host_id: string);
	## Raised when a host goes away.
	global host_disconnected: event(host_id: string);

	## Raised (and logged) when a request or a result row could not be served: a query the host
	## refused, a column value that cannot become the declared type, a column count that differs.
	## ``resultInfo$host`` is empty for errors not tied to one host; ``ev`` names the result event.
	global error: event(resultInfo: ResultInfo, ev: string, message: string);

	## Subscribe hosts to a query: all hosts when both host and group are empty.
	global subscribe: function(q: Query, host: string &default="", group: string
	    &default="");
	global unsubscribe: function(q: Query, host: string &default="", group: string
	    &default="");
	## One-time query (results arrive with utype SNAPSHOT).
	global execute: function(q: Query, host: string &default="", group: string
	    &default="");
	global subscribe_multiple: function(q: Query, host_list: vector of string
	    &default=vector(""), group_list: vector of string &default=vector(
	    ""));
	global unsubscribe_multiple: function(q: Query, host_list: vector of string
	    &default=vector(""), group_list: vector of string &default=vector(
	    ""));
	global execute_multiple: function(q: Query, host_list: vector of string
	    &default=vector(""), group_list: vector of string &default=vector(
	    ""));

	## Hosts with an address in ``range`` join ``group`` (now and when they connect later).
	global join: function(range: subnet, group: string);
	global leave: function(range: subnet, group: string);
	global join_multiple: function(range_list: vector of subnet, group: string);
	global leave_multiple: function(range_list: vector of subnet, group: string);

	## True while the host is connected.
	global isHostAlive: function(host_id: string): bool;

	## Equality of subscriptions as zeek-osquery defined it: query, event, utype, resT and
	## interval (not the cookie).
	global same_event: function(q1: Query, q2: Query): bool;

	## Log helpers of the original framework.
	global log_local: function(level: string, msg: string);
	global log_collector: function(level: string, peer: string, msg: string);
	global log_osquery: function(level: string, peer: string, msg: string);

	## Subscriptions and groupings in force (what collectord is told again when it reconnects).
	global subscriptions: vector of Subscription = vector();
	global groupings: vector of Grouping = vector();

	## A connected host, as collectord reported it.
	type HostInfo: record {
		host_id: string;
		hostname: string;
		addresses: vector of addr;
		groups: vector of string;
	};
	global hosts: table[string] of HostInfo;
}

## Hooks the transport (collector.zeek) implements.
global send_request: hook(op: string, q: Query, hosts: vector of string,
    groups: vector of string);
global send_grouping: hook(op: string, ranges: vector of subnet, group: string);

function log_local(level: string, msg: string)
	{
	Log::write(LOG, Info($ts=network_time(), $source="local", $level=level,
	    $message=msg));
	}

function log_collector(level: string, peer: string, msg: string)
	{
	Log::write(LOG, Info($ts=network_time(), $source="collector", $peer=peer,
	    $level=level, $message=msg));
	}

function log_osquery(level: string, peer: string, msg: string)
	{
	Log::write(LOG, Info($ts=network_time(), $source="host", $peer=peer,
	    $level=level, $message=msg));
	}

## The name of the event a Query names ("" when $ev is unset).
function event_name(q: Query): string
	{
	if ( ! q?$ev )
		return "";
	# Zeek 8 describes an event value as "name: event(...)\n{ body }", Zeek 6-7 as "name\n{ body }".
	return split_string1(fmt("%s", q$ev), /: |\n/)[0];
	}

function event_type(q: Query): string
	{
	return q?$ev ? type_name(q$ev) : "";
	}

function same_event(q1: Query, q2: Query): bool
	{
	if ( q1$query != q2$query || q1$utype != q2$utype || q1$resT != q2$resT )
		return F;
	if ( event_name(q1) != event_name(q2) )
		return F;
	if ( q1?$inter != q2?$inter )
		return F;
	if ( q1?$inter && q1$inter != q2$inter )
		return F;
	return T;
	}

function targets(hosts: vector of string, groups: vector of string): string
	{
	local parts: vector of string = vector();
	for ( _, h in hosts )
		if ( h != "" )
			parts += fmt("host %s", h);
	for ( _, g in groups )
		if ( g != "" )
			parts += fmt("group %s", g);
	return |parts| == 0 ? "all hosts" : join_string_vec(parts, ", ");
	}

function log_send(op: string, q: Query, hosts: vector of string, groups: vector of
    string)
	{
	Log::write(LOG_SEND, Info($ts=network_time(), $source="local", $level="info",
	    $message=fmt("%s '%s' (event %s) to %s", op, q$query, event_name(q),
	    targets(hosts, groups))));
	}

function same_targets(a: vector of string, b: vector of string): bool
	{
	if ( |a| != |b| )
		return F;
	for ( i in a )
		if ( a[i] != b[i] )
			return F;
	return T;
	}

function subscribe_multiple(q: Query, host_list: vector of string,
    group_list: vector of string)
	{
	if ( ! q?$ev )
		{
		log_local("warning", fmt("subscribe without an event ignored: '%s'",
		    q$query));
		return;
		}
	for ( _, s in subscriptions )
		if ( same_event(s$query, q)
		    && same_targets(s$hosts, host_list)
		    && same_targets(s$groups, group_list) )
			return; # identical subscriptions are one
	subscriptions += Subscription($query=q, $hosts=host_list, $groups=group_list);
	log_send("subscribe", q, host_list, group_list);
	hook send_request("subscribe", q, host_list, group_list);
	}

function unsubscribe_multiple(q: Query, host_list: vector of string,
    group_list: vector of string)
	{
	local kept: vector of Subscription = vector();
	local found = F;
	for ( _, s in subscriptions )
		{
		if ( same_event(s$query, q)
		    && same_targets(s$hosts, host_list)
		    && same_targets(s$groups, group_list) )
			found = T;
		else
			kept += s;
		}
	if ( ! found )
		{
		log_local("warning", fmt("unsubscribe of an unknown subscription: '%s'",
		    q$query));
		return;
		}
	subscriptions = kept;
	log_send("unsubscribe", q, host_list, group_list);
	hook send_request("unsubscribe", q, host_list, group_list);
	}

function execute_multiple(q: Query, host_list: vector of string,
    group_list: vector of string)
	{
	if ( ! q?$ev )
		{
		log_local("warning", fmt("execute without an event ignored: '%s'", q$query));
		return;
		}
	q$utype = SNAPSHOT;
	log_send("execute", q, host_list, group_list);
	hook send_request("execute", q, host_list, group_list);
	}

function subscribe(q: Query, host: string, group: string)
	{
	subscribe_multiple(q, vector(host), vector(group));
	}

function unsubscribe(q: Query, host: string, group: string)
	{
	unsubscribe_multiple(q, vector(host), vector(group));
	}

function execute(q: Query, host: string, group: string)
	{
	execute_multiple(q, vector(host), vector(group));
	}

function join_multiple(range_list: vector of subnet, group: string)
	{
	groupings += Grouping($group=group, $ranges=range_list);
	Log::write(LOG_SEND, Info($ts=network_time(), $source="local", $level="info",
	    $message=fmt("join %s to group %s", range_list, group)));
	hook send_grouping("join", range_list, group);
	}

function leave_multiple(range_list: vector of subnet, group: string)
	{
	local kept: vector of Grouping = vector();
	for ( _, g in groupings )
		{
		if ( g$group != group )
			{
			kept += g;
			next;
			}
		local leaving: set[subnet] = set();
		for ( _, lr in range_list )
			add leaving[lr];
		local left: vector of subnet = vector();
		for ( _, r in g$ranges )
			if ( r !in leaving )
				left += r;
		if ( |left| > 0 )
			kept += Grouping($group=g$group, $ranges=left);
		}
	groupings = kept;
	Log::write(LOG_SEND, Info($ts=network_time(), $source="local", $level="info",
	    $message=fmt("leave %s from group %s", range_list, group)));
	hook send_grouping("leave", range_list, group);
	}

function join(range: subnet, group: string)
	{
	join_multiple(vector(range), group);
	}

function leave(range: subnet, group: string)
	{
	leave_multiple(vector(range), group);
	}

function isHostAlive(host_id: string): bool
	{
	return host_id in hosts;
	}

event osquery::error(resultInfo: ResultInfo, ev: string, message: string)
    &priority=-5
	{
	local what = ev == "" ? message : fmt("%s: %s", ev, message);
	if ( resultInfo$host == "" )
		log_collector("error", "", what);
	else
		log_osquery("error", resultInfo$host, what);
	}

event zeek_init() &priority=5
	{
	Log::create_stream(LOG, [$columns=Info, $path="osquery"]);
	Log::create_stream(LOG_SEND, [$columns=Info, $path="osquery_hosts"]);
	}
