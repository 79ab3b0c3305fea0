##! zeek-osquery's script API (module osquery), served by collectord over Zeek's WebSocket API.
##! ``@load osquery`` loads the framework; the pre-written table scripts are
##! ``@load osquery/tables`` (all) or ``@load osquery/tables/<name>`` (one).
##!
##! Zeek 6.0 or newer: from 7.2 the link to collectord is Zeek's ``Cluster::listen_websocket``
##! (any cluster backend), before that Broker's ``Broker::listen_websocket`` (collector.zeek).
##! On an older Zeek the API still loads, so scripts written against it parse, and Zeek stops at
##! start with one clear error.

@load base/misc/version

@load ./main

@if ( Version::number >= 60000 )
@load ./collector
@else
event zeek_init()
	{
	Reporter::fatal(fmt("the osquery package needs Zeek 6.0 or newer; this is Zeek %s",
	    Version::info$version_string));
	}
@endif
