#!/bin/bash
#
# 1090 Women Power Line: ships finished call recordings from the PBX to the backend.
#
# Install as /usr/local/sbin/wpl-recording-hook (mode 0755, owned by root); see
# dialplans/README.md, "Recordings". Two ways in:
#
#   wpl-recording-hook <file base name> <linkedid>
#       Run by app_queue through MONITOR_EXEC when a recording ends (as the asterisk
#       user, synchronously in MixMonitor's thread): moves the finished file into the
#       spool and starts an upload in the background, then returns at once.
#   wpl-recording-hook --flush
#       Uploads everything in the spool; run by a systemd timer or cron every minute,
#       so a recording made while the backend or the network was down still arrives.
#
# A file leaves the PBX only when the backend answered 200/201 for it (it then holds
# the recording encrypted); until then it stays in the spool and is retried. The
# upload is idempotent (the backend keys it by node, linkedid and SHA-256), so a
# retry after a lost answer stores nothing twice.
#
# Settings: /etc/wpl/recording-hook.conf (or $WPL_RECORDING_HOOK_CONF), shell syntax:
#   WPL_NODE=up-east                    # this PBX's node name in the backend's config
#   WPL_INGEST_URL=https://backend.example/api/recordings/ingest
#   WPL_TOKEN_FILE=/etc/wpl/ingest-token  # this node's ingest token, mode 0400, asterisk
#   WPL_CA_FILE=                        # CA bundle for a private CA (optional)
#   WPL_MONITOR_DIR=/var/spool/asterisk/monitor
#   WPL_SPOOL_DIR=/var/spool/asterisk/wpl-recordings
#
# Privacy: file names are channel ids (wpl-<uniqueid>), never a number; the token
# never appears on a command line (curl reads it from standard input), and nothing
# here logs more than a file's base name.

set -u
umask 077

CONF=${WPL_RECORDING_HOOK_CONF:-/etc/wpl/recording-hook.conf}
if [ -r "$CONF" ]; then
    # shellcheck source=/dev/null
    . "$CONF"
fi
NODE=${WPL_NODE:-}
URL=${WPL_INGEST_URL:-}
TOKEN_FILE=${WPL_TOKEN_FILE:-/etc/wpl/ingest-token}
CA_FILE=${WPL_CA_FILE:-}
MONITOR_DIR=${WPL_MONITOR_DIR:-/var/spool/asterisk/monitor}
SPOOL_DIR=${WPL_SPOOL_DIR:-/var/spool/asterisk/wpl-recordings}
CURL=${WPL_CURL:-curl}
# Formats monitor-format can name (wav49 files carry the extension WAV).
FORMATS="wav WAV wav49 gsm"

say() {
    logger -t wpl-recording-hook -- "$*" 2>/dev/null || echo "wpl-recording-hook: $*" >&2
}

valid_id() {
    # Asterisk ids: 1732261000.10, or <systemname>-1732261000.10
    [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]
}

# spool NAME LINKEDID: move the finished recording into the spool, named
# <linkedid>+<name>.<format>; '+' never appears in an Asterisk id.
spool() {
    local name=$1 linkedid=$2 fmt source found=0
    if ! valid_id "$name" || ! valid_id "$linkedid"; then
        say "refusing malformed recording name or call id"
        return 1
    fi
    mkdir -p "$SPOOL_DIR" || return 1
    for fmt in $FORMATS; do
        source="$MONITOR_DIR/$name.$fmt"
        [ -f "$source" ] || continue
        found=1
        # Same file system in a normal install, so the move is atomic; across file
        # systems mv copies first, and the flush only takes files whose move finished.
        if ! mv -f -- "$source" "$SPOOL_DIR/.$linkedid+$name.$fmt.tmp" ||
            ! mv -f -- "$SPOOL_DIR/.$linkedid+$name.$fmt.tmp" "$SPOOL_DIR/$linkedid+$name.$fmt"; then
            say "cannot move $name.$fmt into the spool"
            return 1
        fi
    done
    [ "$found" = 1 ] || say "no recording file for $name (nothing was recorded?)"
    return 0
}

# upload FILE: one PUT; 0 when the backend has the recording.
upload() {
    local file=$1 base linkedid rest fmt sha status
    base=${file##*/}
    linkedid=${base%%+*}
    rest=${base#*+}
    fmt=${rest##*.}
    valid_id "$linkedid" || { say "skipping malformed spool file $base"; return 1; }
    sha=$(sha256sum -- "$file" | cut -d' ' -f1) || return 1
    local ca=()
    [ -n "$CA_FILE" ] && ca=(--cacert "$CA_FILE")
    # The token goes through stdin as a curl config line: not in argv, not in ps.
    status=$(
        printf 'header = "Authorization: Bearer %s"\n' "$(tr -d '\r\n' <"$TOKEN_FILE")" |
            "$CURL" --silent --show-error --output /dev/null --write-out '%{http_code}' \
                --proto '=https,http' --max-time 900 --connect-timeout 15 \
                "${ca[@]}" --config - \
                --header "X-Recording-Format: $fmt" \
                --header "X-Content-SHA256: $sha" \
                --header "Content-Type: application/octet-stream" \
                --upload-file "$file" \
                "$URL/$NODE/$linkedid"
    )
    case $status in
    200 | 201)
        rm -f -- "$file"
        return 0
        ;;
    422)
        # The backend refused this file as it is (not a checksum it can match): keep it
        # aside for a person rather than retrying it forever.
        mkdir -p "$SPOOL_DIR/rejected" && mv -f -- "$file" "$SPOOL_DIR/rejected/"
        say "backend rejected $rest (kept in $SPOOL_DIR/rejected)"
        return 1
        ;;
    *)
        say "upload of $rest failed (HTTP ${status:-none}); will retry"
        return 1
        ;;
    esac
}

flush() {
    local file failed=0
    if [ -z "$NODE" ] || [ -z "$URL" ] || [ ! -r "$TOKEN_FILE" ]; then
        say "not configured: set WPL_NODE, WPL_INGEST_URL and WPL_TOKEN_FILE in $CONF"
        return 1
    fi
    [ -d "$SPOOL_DIR" ] || return 0
    # One flush at a time: the end of a recording and the timer may start one together.
    exec 9>"$SPOOL_DIR/.lock" || return 1
    flock -n 9 || return 0
    shopt -s nullglob
    for file in "$SPOOL_DIR"/*+*.*; do
        case $file in *.tmp) continue ;; esac
        upload "$file" || failed=1
    done
    return "$failed"
}

case ${1:-} in
--flush)
    flush
    ;;
-h | --help | "")
    sed -n '2,30p' "$0"
    [ -n "${1:-}" ]
    ;;
*)
    [ $# -eq 2 ] || { say "usage: $0 <file base name> <linkedid> | --flush"; exit 2; }
    spool "$1" "$2" || exit 1
    # Detached, so MixMonitor's thread is not held for the length of an upload.
    setsid "$0" --flush </dev/null >/dev/null 2>&1 &
    exit 0
    ;;
esac
