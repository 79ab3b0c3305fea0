##! zeek-osquery's script API (module osquery), served by collectord over Zeek's WebSocket API.
##! ``@load osquery`` loads the framework; the pre-written table scripts are
##! ``@load osquery/tables`` (all) or ``@load osquery/tables/<name>`` (one).

@load ./main
@load ./collector
