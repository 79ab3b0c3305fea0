##! zeek-osquery's script API (module osquery), served by collectord over Zeek's WebSocket API.
##! ``@load osquery`` loads the framework; the pre-written table scripts are
##! ``@load osquery/tables`` (all) or ``@load osquery/tables/<name>`` (one).
##!
##! The link to collectord needs Zeek 8.0 or newer (``Cluster::listen_websocket`` and the cluster
##! backends). On an older Zeek the API still loads, so scripts written against it parse, and Zeek
##! stops at start with one clear error instead of parse errors in this package.

@load base/misc/version
@load ./main

@if ( Version::number >= 80000 )
@load ./collector
@else
event zeek_init()
	{
	Reporter::fatal(fmt("the osquery package needs Zeek 8.0 or newer (Cluster::listen_websocket); this is Zeek %s",
	    Version::info$version_string));
	}
@endif
