#!/bin/sh
# Start resumable-cgi as a FastCGI worker with spawn-fcgi (for nginx fastcgi_pass or Apache
# mod_proxy_fcgi), when systemd socket activation is not available.
# Placeholders: @BIN@, @SOCKET@, @PIDFILE@, @TEMP_DIR@, @UPLOAD_DIR@ (see deploy/README.md).
#
# What matters:
# - -s/-M/-U/-G: the unix socket and who may connect: mode 0660, owned by the web server's user, so
#   nginx/Apache workers (www-data) can connect and nobody else can.
# - -u/-g: the worker drops to www-data (spawn-fcgi refuses to run a child as root). That user needs
#   write access to the temp and upload dirs, and owns the PHP script's in-flight parts already.
# - spawn-fcgi binds the socket, puts it on fd 0 and closes stdout/stderr (they point at /dev/null),
#   so the worker's log lines are lost unless you run it with -n under a supervisor that keeps stderr.
# - The RESUMABLE_* variables below are the worker's defaults; fastcgi_param / SetEnv in the web
#   server override them per request.
# Stop: kill "$(cat @PIDFILE@)"
RESUMABLE_TEMP_DIR='@TEMP_DIR@'
RESUMABLE_UPLOAD_DIR='@UPLOAD_DIR@'
RESUMABLE_MAX_CHUNK_SIZE=64M
RESUMABLE_MAX_FILE_SIZE=10G
export RESUMABLE_TEMP_DIR RESUMABLE_UPLOAD_DIR RESUMABLE_MAX_CHUNK_SIZE RESUMABLE_MAX_FILE_SIZE
exec spawn-fcgi -s '@SOCKET@' -M 0660 -U www-data -G www-data -u www-data -g www-data \
    -P '@PIDFILE@' -- '@BIN@' fastcgi
