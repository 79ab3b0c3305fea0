##! Subscribes every host to osquery's ``process_events`` table and writes osq-process_events.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::process_event_added``.

@load osquery

module osquery::process_events;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		pid: int &log;
		path: string &log;
		cmdline: string &log;
		cwd: string &log;
		uid: int &log;
		gid: int &log;
		start_time: int &log;
		parent: int &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_process_events: event(resultInfo: ResultInfo, pid: int,
	    path: string, cmdline: string, cwd: string, uid: int, gid: int,
	    start_time: int, parent: int);
	global process_event_added: event(t: time, host_id: string, pid: int,
	    path: string, cmdline: string, cwd: string, uid: int, gid: int,
	    start_time: int, parent: int);
}

event osquery::table_process_events(resultInfo: ResultInfo, pid: int,
    path: string, cmdline: string, cwd: string, uid: int, gid: int,
    start_time: int, parent: int)
	{
	local t = network_time();
	local info = osquery::process_events::Info($t=t, $host=resultInfo$host,
	    $pid=pid, $path=path, $cmdline=cmdline, $cwd=cwd, $uid=uid,
	    $gid=gid, $start_time=start_time, $parent=parent);
	Log::write(osquery::process_events::LOG, info);

	event osquery::process_event_added(t, resultInfo$host, pid, path, cmdline, cwd,
	    uid, gid, start_time, parent);
	}

event zeek_init()
	{
	Log::create_stream(osquery::process_events::LOG, [
	    $columns=osquery::process_events::Info, $path="osq-process_events",
	    $policy=osquery::process_events::log_policy]);

	local query = [$ev=table_process_events, $query="SELECT pid, path, cmdline, cwd, uid, gid, time, parent FROM process_events",
	    $utype=ADD, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
