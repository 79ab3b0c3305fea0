##! All pre-written table scripts.

@load ./processes
@load ./process_events
@load ./socket_events
@load ./process_open_sockets
@load ./listening_ports
@load ./mounts
@load ./users
@load ./interfaces
@load ./usb_devices
