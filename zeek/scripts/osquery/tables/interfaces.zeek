##! Subscribes every host to osquery's ``interfaces`` table and writes osq-interfaces.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::interface_added`` and ``osquery::interface_removed``.

@load osquery

module osquery::interfaces;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		interface: string &log;
		mac: string &log;
		ip: addr &log &optional;
		mask: string &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_interfaces: event(resultInfo: ResultInfo, interface: string,
	    mac: string, ip: string, mask: string);
	global interface_added: event(t: time, host_id: string, interface: string,
	    mac: string, ip: string, mask: string);
	global interface_removed: event(t: time, host_id: string, interface: string,
	    mac: string, ip: string, mask: string);
}

event osquery::table_interfaces(resultInfo: ResultInfo, interface: string,
    mac: string, ip: string, mask: string)
	{
	local t = network_time();
	local info = osquery::interfaces::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $interface=interface, $mac=mac,
	    $mask=mask);
	local ip_ = split_string1(ip, /%/)[0]; # strip an IPv6 zone index
	if ( is_valid_ip(ip_) )
		info$ip = to_addr(ip_);
	Log::write(osquery::interfaces::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::interface_removed(t, resultInfo$host, interface, mac, ip,
		    mask);
	else
		event osquery::interface_added(t, resultInfo$host, interface, mac, ip, mask);
	}

event zeek_init()
	{
	Log::create_stream(osquery::interfaces::LOG, [
	    $columns=osquery::interfaces::Info, $path="osq-interfaces",
	    $policy=osquery::interfaces::log_policy]);

	local query = [$ev=table_interfaces, $query="SELECT d.interface, d.mac, a.address, a.mask FROM interface_addresses AS a INNER JOIN interface_details AS d ON a.interface=d.interface",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
