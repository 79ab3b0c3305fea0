##! Subscribes every host to osquery's ``processes`` table and writes osq-processes.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::process_added`` and ``osquery::process_removed``.

@load osquery

module osquery::processes;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		pid: int &log;
		name: string &log;
		path: string &log;
		cmdline: string &log;
		cwd: string &log;
		root: string &log;
		uid: int &log;
		gid: int &log;
		on_disk: int &log;
		start_time: int &log;
		parent: int &log;
		pgroup: int &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_processes: event(resultInfo: ResultInfo, pid: int, name: string,
	    path: string, cmdline: string, cwd: string, root: string, uid: int,
	    gid: int, on_disk: int, start_time: int, parent: int, pgroup: int);
	global process_added: event(t: time, host_id: string, pid: int, name: string,
	    path: string, cmdline: string, cwd: string, root: string, uid: int,
	    gid: int, on_disk: int, start_time: int, parent: int, pgroup: int);
	global process_removed: event(t: time, host_id: string, pid: int, name: string,
	    path: string, cmdline: string, cwd: string, root: string, uid: int,
	    gid: int, on_disk: int, start_time: int, parent: int, pgroup: int);
}

event osquery::table_processes(resultInfo: ResultInfo, pid: int, name: string,
    path: string, cmdline: string, cwd: string, root: string, uid: int,
    gid: int, on_disk: int, start_time: int, parent: int, pgroup: int)
	{
	local t = network_time();
	local info = osquery::processes::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $pid=pid, $name=name, $path=path,
	    $cmdline=cmdline, $cwd=cwd, $root=root, $uid=uid, $gid=gid,
	    $on_disk=on_disk, $start_time=start_time, $parent=parent,
	    $pgroup=pgroup);
	Log::write(osquery::processes::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::process_removed(t, resultInfo$host, pid, name, path, cmdline,
		    cwd, root, uid, gid, on_disk, start_time, parent, pgroup);
	else
		event osquery::process_added(t, resultInfo$host, pid, name, path, cmdline,
		    cwd, root, uid, gid, on_disk, start_time, parent, pgroup);
	}

event zeek_init()
	{
	Log::create_stream(osquery::processes::LOG, [$columns=osquery::processes::Info,
	    $path="osq-processes", $policy=osquery::processes::log_policy]);

	local query = [$ev=table_processes, $query="SELECT pid, name, path, cmdline, cwd, root, uid, gid, on_disk, start_time, parent, pgroup FROM processes",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
