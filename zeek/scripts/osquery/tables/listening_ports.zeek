##! Subscribes every host to osquery's ``listening_ports`` table and writes osq-listening_ports.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::listening_port_added`` and ``osquery::listening_port_removed``.

@load osquery

module osquery::listening_ports;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		pid: int &log;
		fd: int &log;
		family: int &log;
		socket: int &log;
		protocol: int &log;
		address: addr &log &optional;
		listening_port: int &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_listening_ports: event(resultInfo: ResultInfo, pid: int, fd: int,
	    family: int, socket: int, protocol: int, address: string,
	    listening_port: int);
	global listening_port_added: event(t: time, host_id: string, pid: int, fd: int,
	    family: int, socket: int, protocol: int, address: string,
	    listening_port: int);
	global listening_port_removed: event(t: time, host_id: string, pid: int,
	    fd: int, family: int, socket: int, protocol: int, address: string,
	    listening_port: int);
}

event osquery::table_listening_ports(resultInfo: ResultInfo, pid: int, fd: int,
    family: int, socket: int, protocol: int, address: string,
    listening_port: int)
	{
	local t = network_time();
	local info = osquery::listening_ports::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $pid=pid, $fd=fd, $family=family,
	    $socket=socket, $protocol=protocol, $listening_port=listening_port);
	if ( is_valid_ip(address) )
		info$address = to_addr(address);
	Log::write(osquery::listening_ports::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::listening_port_removed(t, resultInfo$host, pid, fd, family,
		    socket, protocol, address, listening_port);
	else
		event osquery::listening_port_added(t, resultInfo$host, pid, fd, family,
		    socket, protocol, address, listening_port);
	}

event zeek_init()
	{
	Log::create_stream(osquery::listening_ports::LOG, [
	    $columns=osquery::listening_ports::Info,
	    $path="osq-listening_ports",
	    $policy=osquery::listening_ports::log_policy]);

	local query = [$ev=table_listening_ports, $query="SELECT pid, fd, family, socket, protocol, address, port FROM listening_ports WHERE family=2",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
