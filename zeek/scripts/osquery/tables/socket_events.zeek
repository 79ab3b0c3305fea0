##! Subscribes every host to osquery's ``socket_events`` table and writes osq-socket_events.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::socket_event_added``.
##! osquery reported port 0 for the end a call does not name (connect's local port, bind's
##! remote port); agentd reports NULL there, which no int can carry: the query asks for 0.

@load osquery

module osquery::socket_events;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		action: string &log;
		pid: int &log;
		fd: int &log &optional;
		path: string &log;
		family: int &log;
		protocol: int &log;
		local_address: addr &log &optional;
		remote_address: addr &log &optional;
		local_port: int &log;
		remote_port: int &log;
		start_time: int &log;
		success: int &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_socket_events: event(resultInfo: ResultInfo, action: string,
	    pid: int, fd_str: string, path: string, family: int, protocol: int,
	    local_address: string, remote_address: string, local_port: int,
	    remote_port: int, start_time: int, success: int);
	global socket_event_added: event(t: time, host_id: string, action: string,
	    pid: int, fd_str: string, path: string, family: int, protocol: int,
	    local_address: string, remote_address: string, local_port: int,
	    remote_port: int, start_time: int, success: int);
}

event osquery::table_socket_events(resultInfo: ResultInfo, action: string,
    pid: int, fd_str: string, path: string, family: int, protocol: int,
    local_address: string, remote_address: string, local_port: int,
    remote_port: int, start_time: int, success: int)
	{
	local t = network_time();
	local info = osquery::socket_events::Info($t=t, $host=resultInfo$host,
	    $action=action, $pid=pid, $path=path, $family=family,
	    $protocol=protocol, $local_port=local_port,
	    $remote_port=remote_port, $start_time=start_time, $success=success);
	if ( /^-?[0-9]+$/ == fd_str )
		info$fd = to_int(fd_str);
	if ( action == "connect" || local_address == "" )
		info$local_address = 0.0.0.0;
	else if ( is_valid_ip(local_address) )
		info$local_address = to_addr(local_address);
	if ( is_valid_ip(remote_address) )
		info$remote_address = to_addr(remote_address);
	Log::write(osquery::socket_events::LOG, info);

	event osquery::socket_event_added(t, resultInfo$host, action, pid, fd_str,
	    path, family, protocol, local_address, remote_address, local_port,
	    remote_port, start_time, success);
	}

event zeek_init()
	{
	Log::create_stream(osquery::socket_events::LOG, [
	    $columns=osquery::socket_events::Info, $path="osq-socket_events",
	    $policy=osquery::socket_events::log_policy]);

	local query = [$ev=table_socket_events, $query="SELECT action, pid, fd, path, family, protocol, local_address, remote_address, local_port, remote_port, time, success FROM socket_events WHERE family=2",
	    $utype=ADD, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
