#!/bin/sh
# resumable-cgi completion hook, in POSIX shell:
#   RESUMABLE_ON_COMPLETE=/usr/local/lib/resumable-cgi/on-complete.sh
# (see on-complete.py beside it for everything the program is given and how its exit is read).
#
# Run once per finished file before it gets its name: exit 0 publishes it and a JSON object on
# stdout reaches the page as "data"; exit 75 means "try again later" (503, the file waits); any
# other exit deletes it, and the first line on stderr is what the client is told.
#
# What this one does: accepts only the types listed below, told from the bytes by file(1) (a
# renamed executable is still an executable), and answers the page with the detected type and the
# sha256.
set -eu

if ! command -v file >/dev/null 2>&1; then
    # The server's installation is wrong, not the file: have the client retry later.
    echo "on-complete.sh needs file(1) (Debian: apt-get install file)" >&2
    exit 75
fi

type=$(file --brief --mime-type -- "$RESUMABLE_HOOK_PATH")
case "$type" in
    image/png | image/jpeg | image/gif | image/webp | application/pdf | text/plain | \
        application/zip | application/octet-stream) ;;
    *)
        echo "files of type $type are not accepted here" >&2
        exit 1
        ;;
esac

sum=$(sha256sum -- "$RESUMABLE_HOOK_PATH")
sum=${sum%% *}
echo "accepted $RESUMABLE_HOOK_NAME ($RESUMABLE_HOOK_SIZE bytes, $type)" >&2
printf '{"type":"%s","sha256":"%s"}\n' "$type" "$sum"
