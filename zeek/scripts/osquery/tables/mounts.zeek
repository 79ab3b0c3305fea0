##! Subscribes every host to osquery's ``mounts`` table and writes osq-mounts.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::mount_added`` and ``osquery::mount_removed``.

@load osquery

module osquery::mounts;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		device: string &log;
		device_alias: string &log;
		path: string &log;
		typ: string &log;
		blocks_size: int &log;
		blocks: int &log;
		flags: string &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_mounts: event(resultInfo: ResultInfo, device: string,
	    device_alias: string, path: string, typ: string, blocks_size: int,
	    blocks: int, flags: string);
	global mount_added: event(t: time, host_id: string, device: string,
	    device_alias: string, path: string, typ: string, blocks_size: int,
	    blocks: int, flags: string);
	global mount_removed: event(t: time, host_id: string, device: string,
	    device_alias: string, path: string, typ: string, blocks_size: int,
	    blocks: int, flags: string);
}

event osquery::table_mounts(resultInfo: ResultInfo, device: string,
    device_alias: string, path: string, typ: string, blocks_size: int,
    blocks: int, flags: string)
	{
	local t = network_time();
	local info = osquery::mounts::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $device=device,
	    $device_alias=device_alias, $path=path, $typ=typ,
	    $blocks_size=blocks_size, $blocks=blocks, $flags=flags);
	Log::write(osquery::mounts::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::mount_removed(t, resultInfo$host, device, device_alias, path,
		    typ, blocks_size, blocks, flags);
	else
		event osquery::mount_added(t, resultInfo$host, device, device_alias, path,
		    typ, blocks_size, blocks, flags);
	}

event zeek_init()
	{
	Log::create_stream(osquery::mounts::LOG, [$columns=osquery::mounts::Info,
	    $path="osq-mounts", $policy=osquery::mounts::log_policy]);

	local query = [$ev=table_mounts, $query="SELECT device, device_alias, path, type, blocks_size, blocks, flags FROM mounts",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
