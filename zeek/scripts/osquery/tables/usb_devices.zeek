##! Subscribes every host to osquery's ``usb_devices`` table and writes osq-usb_devices.log,
##! as zeek-osquery-queries' table script did: ``t``, ``host``, ``added``, then the columns
##! (osquery INTEGER columns as int, TEXT as string). Raises ``osquery::usb_device_added`` and ``osquery::usb_device_removed``.

@load osquery

module osquery::usb_devices;

export {
	redef enum Log::ID += { LOG };

	type Info: record {
		t: time &log;
		host: string &log;
		added: bool &log;
		vendor: string &log;
		model: string &log;
		serial: string &log;
		removable: int &log;
	};

	global log_policy: Log::PolicyHook;
}

module osquery;

export {
	## One row of the subscription (the query's own event).
	global table_usb_devices: event(resultInfo: ResultInfo, vendor: string,
	    model: string, serial: string, removable: int);
	global usb_device_added: event(t: time, host_id: string, vendor: string,
	    model: string, serial: string, removable: int);
	global usb_device_removed: event(t: time, host_id: string, vendor: string,
	    model: string, serial: string, removable: int);
}

event osquery::table_usb_devices(resultInfo: ResultInfo, vendor: string,
    model: string, serial: string, removable: int)
	{
	local t = network_time();
	local info = osquery::usb_devices::Info($t=t, $host=resultInfo$host,
	    $added=resultInfo$utype != REMOVE, $vendor=vendor, $model=model,
	    $serial=serial, $removable=removable);
	Log::write(osquery::usb_devices::LOG, info);

	if ( resultInfo$utype == REMOVE )
		event osquery::usb_device_removed(t, resultInfo$host, vendor, model, serial,
		    removable);
	else
		event osquery::usb_device_added(t, resultInfo$host, vendor, model, serial,
		    removable);
	}

event zeek_init()
	{
	Log::create_stream(osquery::usb_devices::LOG, [
	    $columns=osquery::usb_devices::Info, $path="osq-usb_devices",
	    $policy=osquery::usb_devices::log_policy]);

	local query = [$ev=table_usb_devices,
	    $query="SELECT vendor, model, serial, removable FROM usb_devices",
	    $utype=BOTH, $inter=QUERY_INTERVAL];
	subscribe(query);
	}
