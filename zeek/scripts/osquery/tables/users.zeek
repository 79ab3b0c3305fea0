##! Subscribes every host to osquery's ``users`` table and writes osq-users.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::user_added`` and ``osquery::user_removed``.

@load osquery

module osquery::users;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		uid: int &log;
		gid: int &log;
		uid_signed: int &log;
		gid_signed: int &log;
		username: string &log;
		description: string &log;
		directory: string &log;
		shell: string &log;
		uuid: string &log;
		user_type: string &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_users: event(resultInfo: ResultInfo, uid: int, gid: int,
	    uid_signed: int, gid_signed: int, username: string,
	    description: string, directory: string, shell: string, uuid: string,
	    user_type: string);
	global user_added: event(t: time, host_id: string, uid: int, gid: int,
	    uid_signed: int, gid_signed: int, username: string,
	    description: string, directory: string, shell: string, uuid: string,
	    user_type: string);
	global user_removed: event(t: time, host_id: string, uid: int, gid: int,
	    uid_signed: int, gid_signed: int, username: string,
	    description: string, directory: string, shell: string, uuid: string,
	    user_type: string);
}

event osquery::table_users(resultInfo: ResultInfo, uid: int, gid: int,
    uid_signed: int, gid_signed: int, username: string, description: string,
    directory: string, shell: string, uuid: string, user_type: string)
	{
	local t = network_time();
	local info = osquery::users::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $uid=uid, $gid=gid,
	    $uid_signed=uid_signed, $gid_signed=gid_signed, $username=username,
	    $description=description, $directory=directory, $shell=shell,
	    $uuid=uuid, $user_type=user_type);
	Log::write(osquery::users::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::user_removed(t, resultInfo$host, uid, gid, uid_signed,
		    gid_signed, username, description, directory, shell, uuid,
		    user_type);
	else
		event osquery::user_added(t, resultInfo$host, uid, gid, uid_signed,
		    gid_signed, username, description, directory, shell, uuid,
		    user_type);
	}

event zeek_init()
	{
	Log::create_stream(osquery::users::LOG, [$columns=osquery::users::Info,
	    $path="osq-users", $policy=osquery::users::log_policy]);

	local query = [$ev=table_users, $query="SELECT uid, gid, uid_signed, gid_signed, username, description, directory, shell, uuid, type FROM users",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
