##! The original framework's package name: scripts written for zeek-osquery load unchanged.

@load osquery
