##! Subscribes every host to osquery's ``process_open_sockets`` table and writes osq-process_open_sockets.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::process_open_socket_added`` and ``osquery::process_open_socket_removed``.

@load osquery

module osquery::process_open_sockets;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		pid: int &log;
		fd: int &log;
		family: int &log;
		protocol: int &log;
		local_address: addr &log &optional;
		remote_address: addr &log &optional;
		local_port: int &log;
		remote_port: int &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_process_open_sockets: event(resultInfo: ResultInfo, pid: int,
	    fd: int, family: int, protocol: int, local_address: string,
	    remote_address: string, local_port: int, remote_port: int);
	global process_open_socket_added: event(t: time, host_id: string, pid: int,
	    fd: int, family: int, protocol: int, local_address: string,
	    remote_address: string, local_port: int, remote_port: int);
	global process_open_socket_removed: event(t: time, host_id: string, pid: int,
	    fd: int, family: int, protocol: int, local_address: string,
	    remote_address: string, local_port: int, remote_port: int);
}

event osquery::table_process_open_sockets(resultInfo: ResultInfo, pid: int,
    fd: int, family: int, protocol: int, local_address: string,
    remote_address: string, local_port: int, remote_port: int)
	{
	if ( resultInfo$utype == ADD && pid == -1 )
		return;
	local t = network_time();
	local info = osquery::process_open_sockets::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $pid=pid, $fd=fd, $family=family,
	    $protocol=protocol, $local_port=local_port,
	    $remote_port=remote_port);
	if ( is_valid_ip(local_address) )
		info$local_address = to_addr(local_address);
	if ( is_valid_ip(remote_address) )
		info$remote_address = to_addr(remote_address);
	Log::write(osquery::process_open_sockets::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::process_open_socket_removed(t, resultInfo$host, pid, fd,
		    family, protocol, local_address, remote_address, local_port,
		    remote_port);
	else
		event osquery::process_open_socket_added(t, resultInfo$host, pid, fd, family,
		    protocol, local_address, remote_address, local_port,
		    remote_port);
	}

event zeek_init()
	{
	Log::create_stream(osquery::process_open_sockets::LOG, [
	    $columns=osquery::process_open_sockets::Info,
	    $path="osq-process_open_sockets",
	    $policy=osquery::process_open_sockets::log_policy]);

	local query = [$ev=table_process_open_sockets, $query="SELECT pid, fd, family, protocol, local_address, remote_address, local_port, remote_port FROM process_open_sockets WHERE family=2",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
