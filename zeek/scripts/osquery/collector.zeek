##! The link to collectord: the versioned events exchanged over Zeek's WebSocket API, the
##! WebSocket listener, and exactly-once delivery of result batches.
##!
##! collectord connects as a WebSocket client, subscribes to ``collector_topic`` and publishes on
##! ``zeek_topic``. Protocol (version 1, every event named ``osquery::*_v1``; docs/zeek.md):
##!
##! - collectord says ``collector_hello_v1``; the framework answers ``zeek_hello_v1`` with its
##!   delivery marks, then every subscription and grouping in force (``subscribe_v1``,
##!   ``join_v1``) and the one-time queries still waiting, then ``sync_done_v1``.
##! - Requests made while collectord is connected are sent as they happen.
##! - Results come in numbered batches per host: ``batch_begin_v1(host, seq, rows)``, the rows as
##!   the subscription's own events, ``batch_end_v1(host, seq)``; the framework records the mark and
##!   answers ``batch_ack_v1``. collectord asks ``state_query_v1`` before it sends a batch again,
##!   so a batch Zeek has completed is never raised twice. The marks survive a restart of Zeek in
##!   ``state_file``.

@load base/frameworks/broker
@load base/frameworks/cluster
@load base/frameworks/input
@load base/misc/version
@load ./main

@if ( Version::number >= 80100 )
@if ( Cluster::backend == Cluster::CLUSTER_BACKEND_NONE )
# Since Zeek 8.1 a standalone Zeek has no cluster backend, and then its WebSocket listener never
# acknowledges a client: load one.
@load policy/frameworks/cluster/backend/broker
@endif
@endif

@if ( Version::number < 70200 && ! Cluster::is_enabled() )
# Before Zeek 7.2 the WebSocket listener is Broker's, with Broker's SSL options, and SSL is on
# by default (without certificates: encrypted, unauthenticated). Plain ws:// on a standalone
# Zeek, as Zeek 7.2+ listens by default; a site that wants wss:// redefines this back to F and
# sets Broker::ssl_certificate and Broker::ssl_keyfile (docs/zeek.md).
redef Broker::disable_ssl = T;
@endif

module osquery;

export {
	## Start Zeek's WebSocket listener for collectord (on a cluster, on the manager).
	const start_websocket: bool = T &redef;
	## Address and port of that listener.
	const websocket_address: addr = 127.0.0.1 &redef;
	const websocket_port: port = 27759/tcp &redef;
	## TLS for the listener: certificate and key files (both or neither), optional CA for clients.
	const websocket_tls_cert: string = "" &redef;
	const websocket_tls_key: string = "" &redef;
	const websocket_tls_ca: string = "" &redef;

	## Topic prefix the framework subscribes to: collectord publishes results and its messages here.
	const zeek_topic: string = "/osquery/zeek/" &redef;
	## Topic the framework publishes requests, acknowledgements and its state on.
	const collector_topic: string = "/osquery/collector/" &redef;

	## Where the per-host delivery marks are kept across restarts ("" keeps them in memory only).
	const state_file: string = "osquery-delivery.state" &redef;

	## This Zeek process (changes on every start).
	global zeek_id: string = unique_id("zeek_");

	## Versioned protocol with collectord: requests (framework -> collectord).
	type Request: record {
		ev_name: string; ##< the result event's full name
		ev_type: string; ##< its signature, type_name(q$ev)
		query: string;
		utype: string; ##< ADD, REMOVE, BOTH or SNAPSHOT
		inter: count; ##< seconds
		cookie: string;
		hosts: vector of string; ##< empty strings mean: no host restriction
		groups: vector of string;
	};
	global zeek_hello_v1: event(zeek_id: string, version: string, done: table[
	    string] of count, open: table[string] of count);
	global subscribe_v1: event(zeek_id: string, req: Request);
	global unsubscribe_v1: event(zeek_id: string, req: Request);
	global execute_v1: event(zeek_id: string, req: Request);
	global join_v1: event(zeek_id: string, ranges: vector of subnet,
	    group: string);
	global leave_v1: event(zeek_id: string, ranges: vector of subnet,
	    group: string);
	global sync_done_v1: event(zeek_id: string, requests: count);
	global batch_ack_v1: event(zeek_id: string, host_id: string, seq: count);
	global state_v1: event(zeek_id: string, done: table[string] of count,
	    open: table[string] of count);

	## collectord -> framework.
	global collector_hello_v1: event(collector_id: string, version: string)
	    &is_used;
	global state_query_v1: event(collector_id: string) &is_used;
	global host_connected_v1: event(host_id: string, hostname: string,
	    addresses: vector of addr, groups: vector of string) &is_used;
	global host_disconnected_v1: event(host_id: string) &is_used;
	global batch_begin_v1: event(host_id: string, seq: count, rows: count)
	    &is_used;
	global batch_end_v1: event(host_id: string, seq: count) &is_used;

	## Highest completed batch per host, and the batch begun but not ended per host.
	global batch_done: table[string] of count;
	global batch_open: table[string] of count;
	## Batches that arrived again although completed (collectord asks first; this stays 0).
	global repeated_batches: count = 0;
}

const package_version = "1.0";

# Publishing and subscribing: the cluster API where Zeek has it (7.1 and newer: every cluster
# backend, ZeroMQ included), Broker's before that. Both take (topic, event, args...).
@if ( Version::number >= 70100 )
global publish_event = Cluster::publish;
global subscribe_topic = Cluster::subscribe;
@else
global publish_event = Broker::publish;
global subscribe_topic = Broker::subscribe;
@endif

global write_state_tick: event();

# One-time queries made while no collector listened; sent with the next replay.
global pending_executes: vector of Request = vector();
global collector_seen = F;
# The delivery marks are loaded before any collector is answered.
global state_loaded = F;
global hello_waiting: set[string];
global state_dirty = F;

function make_request(q: Query, hosts: vector of string, groups: vector of
    string): Request
	{
	return Request($ev_name=event_name(q), $ev_type=event_type(q), $query=q$query,
	    $utype=split_string(cat(q$utype), /::/)[1],
	    $inter=q?$inter ? q$inter : DEFAULT_INTERVAL, $cookie=q$cookie,
	    $hosts=hosts, $groups=groups);
	}

hook send_request(op: string, q: Query, hosts: vector of string, groups: vector of
    string)
	{
	local req = make_request(q, hosts, groups);
	if ( op == "subscribe" )
		publish_event(collector_topic, subscribe_v1, zeek_id, req);
	else if ( op == "unsubscribe" )
		publish_event(collector_topic, unsubscribe_v1, zeek_id, req);
	else if ( op == "execute" )
		{
		if ( collector_seen )
			publish_event(collector_topic, execute_v1, zeek_id, req);
		else
			pending_executes += req;
		}
	}

hook send_grouping(op: string, ranges: vector of subnet, group: string)
	{
	if ( op == "join" )
		publish_event(collector_topic, join_v1, zeek_id, ranges, group);
	else
		publish_event(collector_topic, leave_v1, zeek_id, ranges, group);
	}

function replay(collector_id: string)
	{
	publish_event(collector_topic, zeek_hello_v1, zeek_id, package_version,
	    batch_done, batch_open);
	local n = 0;
	for ( _, s in subscriptions )
		{
		publish_event(collector_topic, subscribe_v1, zeek_id, make_request(s$query,
		    s$hosts, s$groups));
		++n;
		}
	for ( _, g in groupings )
		{
		publish_event(collector_topic, join_v1, zeek_id, g$ranges, g$group);
		++n;
		}
	for ( _, req in pending_executes )
		{
		publish_event(collector_topic, execute_v1, zeek_id, req);
		++n;
		}
	pending_executes = vector();
	publish_event(collector_topic, sync_done_v1, zeek_id, n);
	log_collector("info", collector_id, fmt(
	    "collector connected; sent %d subscriptions, groupings and queries",
	    n));
	}

event osquery::collector_hello_v1(collector_id: string, version: string)
	{
	collector_seen = T;
	if ( ! state_loaded )
		{
		add hello_waiting[collector_id];
		return;
		}
	replay(collector_id);
	}

event osquery::state_query_v1(collector_id: string)
	{
	if ( state_loaded )
		publish_event(collector_topic, state_v1, zeek_id, batch_done, batch_open);
	}

event osquery::host_connected_v1(host_id: string, hostname: string,
    addresses: vector of addr, groups: vector of string)
	{
	local known = host_id in hosts;
	hosts[host_id] = HostInfo($host_id=host_id, $hostname=hostname,
	    $addresses=addresses, $groups=groups);
	if ( known )
		return;
	log_osquery("info", host_id, fmt("host connected: %s %s groups %s", hostname,
	    addresses, groups));
	event osquery::host_connected(host_id);
	}

# WebSocket clients that subscribed to collector_topic: collectord (one per collector).
global collector_clients: set[string];

# The last collector gone: nobody reports for the hosts any more, they are disconnected (a
# collector that comes back says host_connected again for those it serves).
function collector_client_lost(id: string, why: string)
	{
	if ( id !in collector_clients )
		return;
	delete collector_clients[id];
	if ( |collector_clients| > 0 )
		return;
	log_collector("warning", id, fmt(
	    "collector gone (%s): its %d hosts are taken as disconnected", why, |hosts|));
	local gone: vector of string = vector();
	for ( h in hosts )
		gone += h;
	clear_table(hosts);
	for ( _, h in gone )
		{
		log_osquery("info", h, "host disconnected (no collector)");
		event osquery::host_disconnected(h);
		}
	}

@if ( Version::number >= 70200 )
event Cluster::websocket_client_added(endpoint: Cluster::EndpointInfo,
    subscriptions: string_vec)
	{
	for ( _, s in subscriptions )
		if ( starts_with(collector_topic, s) )
			add collector_clients[endpoint$id];
	}

event Cluster::websocket_client_lost(endpoint: Cluster::EndpointInfo, code: count,
    reason: string)
	{
	collector_client_lost(endpoint$id, fmt("%d %s", code, reason));
	}
@else
# Broker's WebSocket clients (Zeek 6.0 to 7.1) are announced by Broker's status events, with
# these texts and without their subscriptions: every WebSocket client counts as a collector.
event Broker::endpoint_discovered(endpoint: Broker::EndpointInfo, msg: string)
	{
	if ( msg == "found a new client in the network" )
		add collector_clients[endpoint$id];
	}

event Broker::peer_lost(endpoint: Broker::EndpointInfo, msg: string)
	{
	if ( msg == "lost connection to client" )
		collector_client_lost(endpoint$id, msg);
	}
@endif

event osquery::host_disconnected_v1(host_id: string)
	{
	if ( host_id !in hosts )
		return;
	delete hosts[host_id];
	log_osquery("info", host_id, "host disconnected");
	event osquery::host_disconnected(host_id);
	}

event osquery::batch_begin_v1(host_id: string, seq: count, rows: count)
	{
	if ( host_id in batch_done && seq <= batch_done[host_id] )
		{
		++repeated_batches;
		log_osquery("warning", host_id, fmt(
		    "batch %d arrived again after it was completed", seq));
		}
	batch_open[host_id] = seq;
	state_dirty = T;
	}

event osquery::batch_end_v1(host_id: string, seq: count)
	{
	if ( host_id !in batch_done || seq > batch_done[host_id] )
		batch_done[host_id] = seq;
	if ( host_id in batch_open && batch_open[host_id] == seq )
		delete batch_open[host_id];
	state_dirty = T;
	publish_event(collector_topic, batch_ack_v1, zeek_id, host_id, seq);
	}

# --- delivery marks across restarts ---------------------------------------------------------

type MarkIdx: record {
	host: string;
};

type Mark: record {
	done: count;
	open: count; # 0: none (sequences start at 1)
};

global loaded_marks: table[string] of Mark;

function write_state()
	{
	if ( state_file == "" || ! state_dirty )
		return;
	local tmp = state_file + ".tmp";
	local f = ::open(tmp);
	write_file(f, "#fields\thost\tdone\topen\n");
	local seen: set[string];
	for ( h, s in batch_done )
		{
		write_file(f, fmt("%s\t%d\t%d\n", h, s, h in batch_open ? batch_open[h] : 0));
		add seen[h];
		}
	for ( h, s in batch_open )
		if ( h !in seen )
			write_file(f, fmt("%s\t0\t%d\n", h, s));
	close(f);
	if ( ! rename(tmp, state_file) )
		log_local("error", fmt("cannot write %s", state_file));
	state_dirty = F;
	}

event osquery::write_state_tick()
	{
	write_state();
	schedule 1sec { osquery::write_state_tick() };
	}

function loaded()
	{
	state_loaded = T;
	for ( c in hello_waiting )
		replay(c);
	hello_waiting = set();
	}

event Input::end_of_data(name: string, source: string)
	{
	if ( name != "osquery::marks" )
		return;
	for ( h, m in loaded_marks )
		{
		if ( m$done > 0 )
			batch_done[h] = m$done;
		if ( m$open > 0 )
			batch_open[h] = m$open;
		}
	Input::remove(name);
	log_local("info", fmt("delivery marks of %d hosts loaded from %s",
	    |loaded_marks|, state_file));
	loaded();
	}

@if ( Version::number >= 70200 )
function listen_for_collectord()
	{
	local tls = Cluster::WebSocketTLSOptions();
	if ( websocket_tls_cert != "" )
		tls = Cluster::WebSocketTLSOptions($cert_file=websocket_tls_cert,
		    $key_file=websocket_tls_key,
		    $enable_peer_verification=websocket_tls_ca != "",
		    $ca_file=websocket_tls_ca);
	if ( ! Cluster::listen_websocket(Cluster::WebSocketServerOptions(
	    $listen_addr=websocket_address, $listen_port=websocket_port,
	    $tls_options=tls)) )
		Reporter::error(fmt("osquery: cannot listen for collectord on %s:%s",
		    websocket_address, websocket_port));
	else
		log_local("info", fmt("listening for collectord on %s:%s", websocket_address,
		    websocket_port));
	}
@else
# Broker's listener (Zeek 6.0 to 7.1): TLS is Broker's (Broker::disable_ssl, ssl_certificate,
# ssl_keyfile, ssl_cafile), not the websocket_tls_* options; it retries a busy port every
# Broker::default_listen_retry.
function listen_for_collectord()
	{
	if ( websocket_tls_cert != "" )
		Reporter::error("osquery: before Zeek 7.2 the WebSocket listener takes Broker's SSL options (Broker::ssl_certificate, Broker::ssl_keyfile, Broker::ssl_cafile, Broker::disable_ssl = F), not osquery::websocket_tls_cert");
	local bound = Broker::listen_websocket(cat(websocket_address), websocket_port);
	if ( bound == 0/tcp )
		Reporter::error(fmt("osquery: cannot listen for collectord on %s:%s",
		    websocket_address, websocket_port));
	else
		log_local("info", fmt("listening for collectord on %s:%s (%s)", websocket_address,
		    bound, Broker::disable_ssl ? "ws://" : "wss://"));
	}
@endif

event zeek_init() &priority=-5
	{
	subscribe_topic(zeek_topic);

	if ( state_file != "" && file_size(state_file) >= 0 )
		Input::add_table([$source=state_file, $name="osquery::marks", $idx=MarkIdx,
		    $val=Mark, $destination=loaded_marks, $mode=Input::MANUAL]);
	else
		loaded();
	if ( state_file != "" )
		schedule 1sec { osquery::write_state_tick() };

@if ( ! Cluster::is_enabled() || Cluster::local_node_type() == Cluster::MANAGER )
	if ( start_websocket )
		listen_for_collectord();
@endif
	}

event zeek_done()
	{
	state_dirty = T;
	write_state();
	}
