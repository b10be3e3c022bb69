#!/bin/sh
# sos-entrypoint: fetch an SOS artifact by digest, verify it, and start it the way the
# local runtime does (sos.launch: same argv, same environment), listening on $PORT.
# One script for every curated runtime image (python, node, go, jvm); POSIX sh only.
#
# Environment (the Knative backend sets these; see docs/sos/knative.md):
#   SOS_ARTIFACT_DIGEST    sha256:<64 hex> of the artifact                      (required)
#   SOS_ARTIFACT_URL       where to download it: the SOS artifact store, by digest
#   SOS_ARTIFACT_PATH      or a file that is already there (e.g. a mounted volume);
#                          checked against the digest all the same
#   SOS_ARTIFACT_TOKEN     bearer token for the download                        (optional)
#   SOS_ARTIFACT_LANGUAGE  python | node | go | jvm; must match the image's
#                          SOS_RUNTIME_LANGUAGE when both are set
#   SOS_ARTIFACT_CACHE     download directory (default ${TMPDIR:-/tmp}/sos-artifacts)
#   SOS_DOWNLOADER         curl | wget | python3 | node (default: the first one present)
#   SOS_DOWNLOAD_ATTEMPTS  tries before giving up (default 3, one second apart)
#   PORT, HOST             where the artifact listens (default 8080 and 0.0.0.0)
#   SOS_MEMORY_BYTES       the memory limit: a JVM gets -Xmx of three quarters of it
#   SHIV_ROOT              where a Python artifact (a shiv zipapp) unpacks its packages
#
# A Python artifact built by `sos build` is prepared before it starts: shiv unpacks its
# packages into $SHIV_ROOT (SOS_PREPARE_ONLY=1 python3 ARTIFACT, as the local runtime does
# once per artifact), so an unpack that fails is told here, not by a half-started app.
#
# Exit codes: 64 bad configuration, 65 digest mismatch (refused to start),
#             69 download failed, 70 preparing a Python artifact failed,
#             127 a needed program is missing from the image.
set -eu

say() { printf 'sos-entrypoint: %s\n' "$*" >&2; }
die() {
    code=$1
    shift
    say "$*"
    exit "$code"
}

# ---------------------------------------------------------------- configuration

language=${SOS_ARTIFACT_LANGUAGE:-${SOS_RUNTIME_LANGUAGE:-}}
if [ -n "${SOS_ARTIFACT_LANGUAGE:-}" ] && [ -n "${SOS_RUNTIME_LANGUAGE:-}" ] &&
    [ "$SOS_ARTIFACT_LANGUAGE" != "$SOS_RUNTIME_LANGUAGE" ]; then
    die 64 "this is the $SOS_RUNTIME_LANGUAGE runtime image, but the artifact is" \
        "$SOS_ARTIFACT_LANGUAGE: use the runtime-$SOS_ARTIFACT_LANGUAGE image"
fi
case $language in
python) suffix=.pyz ;;
node) suffix=.js ;;
go) suffix= ;;
jvm) suffix=.jar ;;
"") die 64 "SOS_ARTIFACT_LANGUAGE is not set (python, node, go or jvm)" ;;
*) die 64 "unknown artifact language '$language': expected python, node, go or jvm" ;;
esac

digest=${SOS_ARTIFACT_DIGEST:-}
hex=${digest#sha256:}
case $hex in *[!0-9a-f]*) hex= ;; esac
if [ "$digest" != "sha256:$hex" ] || [ ${#hex} -ne 64 ]; then
    die 64 "SOS_ARTIFACT_DIGEST='$digest' must be sha256: followed by 64 lowercase hex digits"
fi

PORT=${PORT:-8080}
HOST=${HOST:-0.0.0.0}
export PORT HOST

# ---------------------------------------------------------------- tools

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
    else
        die 127 "no sha256 tool in this image (sha256sum, shasum or python3)"
    fi
}

download() { # URL FILE
    tool=${SOS_DOWNLOADER:-}
    if [ -z "$tool" ]; then
        for candidate in curl wget python3 node; do
            if command -v "$candidate" >/dev/null 2>&1; then
                tool=$candidate
                break
            fi
        done
    fi
    token=${SOS_ARTIFACT_TOKEN:-}
    case $tool in
    curl)
        # the token goes through stdin, not argv, so it does not show in `ps`
        if [ -n "$token" ]; then
            printf 'header = "Authorization: Bearer %s"\n' "$token" |
                curl --config - -fsSL --connect-timeout 10 -o "$2" "$1"
        else
            curl -fsSL --connect-timeout 10 -o "$2" "$1"
        fi
        ;;
    wget)
        if [ -n "$token" ]; then
            wget -q -T 60 --header "Authorization: Bearer $token" -O "$2" "$1"
        else
            wget -q -T 60 -O "$2" "$1"
        fi
        ;;
    python3)
        python3 - "$1" "$2" <<'PYTHON'
import os, shutil, sys, urllib.request

url, path = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url)
if os.environ.get("SOS_ARTIFACT_TOKEN"):
    request.add_header("Authorization", "Bearer " + os.environ["SOS_ARTIFACT_TOKEN"])
try:
    with urllib.request.urlopen(request, timeout=60) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out)
except Exception as exc:
    sys.exit(f"sos-entrypoint: {exc}")
PYTHON
        ;;
    node)
        node - "$1" "$2" <<'NODE'
const fs = require("fs");
const [url, path] = process.argv.slice(-2);
function get(address, hops) {
  const lib = address.startsWith("https:") ? require("https") : require("http");
  const headers = {};
  if (process.env.SOS_ARTIFACT_TOKEN) headers.Authorization = "Bearer " + process.env.SOS_ARTIFACT_TOKEN;
  lib.get(address, { headers, timeout: 60000 }, (res) => {
    if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location && hops < 5) {
      res.resume();
      return get(new URL(res.headers.location, address).toString(), hops + 1);
    }
    if (res.statusCode !== 200) {
      console.error(`sos-entrypoint: HTTP ${res.statusCode} from ${address}`);
      process.exit(1);
    }
    const out = fs.createWriteStream(path);
    res.pipe(out);
    out.on("finish", () => out.close(() => process.exit(0)));
  }).on("error", (err) => { console.error(`sos-entrypoint: ${err.message}`); process.exit(1); });
}
get(url, 0);
NODE
        ;;
    "") die 127 "no download tool in this image (curl, wget, python3 or node)" ;;
    *) die 64 "unknown SOS_DOWNLOADER '$tool': use curl, wget, python3 or node" ;;
    esac
}

# ---------------------------------------------------------------- fetch and verify

cache=${SOS_ARTIFACT_CACHE:-${TMPDIR:-/tmp}/sos-artifacts}
artifact=$cache/$hex$suffix

if [ -n "${SOS_ARTIFACT_PATH:-}" ]; then
    [ -f "$SOS_ARTIFACT_PATH" ] || die 64 "SOS_ARTIFACT_PATH=$SOS_ARTIFACT_PATH is not a file"
    source=$SOS_ARTIFACT_PATH
    got=$(sha256_of "$source")
    if [ "$got" != "$hex" ]; then
        die 65 "artifact digest mismatch: expected sha256:$hex, $source has sha256:$got." \
            "Refusing to start: these are not the bytes this revision was created with"
    fi
    if [ "$language" = go ] && [ ! -x "$source" ]; then
        mkdir -p "$cache"
        { cp "$source" "$artifact.part" && chmod 0555 "$artifact.part" &&
            mv -f "$artifact.part" "$artifact"; } || die 64 "cannot copy $source to $cache"
    else
        artifact=$source
    fi
elif [ -f "$artifact" ] && [ "$(sha256_of "$artifact")" = "$hex" ]; then
    say "using the verified artifact already in $cache"
else
    url=${SOS_ARTIFACT_URL:-}
    [ -n "$url" ] || die 64 "set SOS_ARTIFACT_URL (the SOS artifact store) or SOS_ARTIFACT_PATH"
    mkdir -p "$cache" || die 64 "cannot create the download directory $cache"
    attempts=${SOS_DOWNLOAD_ATTEMPTS:-3}
    attempt=1
    say "downloading $digest from $url"
    until download "$url" "$artifact.part"; do
        if [ "$attempt" -ge "$attempts" ]; then
            rm -f "$artifact.part"
            die 69 "could not download the artifact from $url ($attempts attempts);" \
                "check SOS_ARTIFACT_URL and that the SOS server is reachable from the pod"
        fi
        attempt=$((attempt + 1))
        sleep 1
    done
    got=$(sha256_of "$artifact.part")
    if [ "$got" != "$hex" ]; then
        rm -f "$artifact.part"
        die 65 "artifact digest mismatch: expected sha256:$hex, downloaded sha256:$got from" \
            "$url. Refusing to start: these are not the bytes this revision was created with." \
            "Check that SOS_ARTIFACT_URL points at the SOS artifact store"
    fi
    chmod 0555 "$artifact.part"
    mv -f "$artifact.part" "$artifact"
fi

# ---------------------------------------------------------------- start (as sos.launch does)

case $language in
python) set -- "${SOS_PYTHON:-python3}" "$artifact" ;;
node) set -- node "$artifact" ;;
go) set -- "$artifact" ;;
jvm)
    set -- java
    if [ -n "${SOS_MEMORY_BYTES:-}" ]; then
        case $SOS_MEMORY_BYTES in
        *[!0-9]*) die 64 "SOS_MEMORY_BYTES='$SOS_MEMORY_BYTES' must be a whole number of bytes" ;;
        esac
        # leave a quarter of the limit for the JVM's own non-heap memory
        heap=$((SOS_MEMORY_BYTES * 3 / 4 / 1048576))
        [ "$heap" -ge 16 ] || heap=16
        set -- java "-Xmx${heap}m"
    fi
    set -- "$@" -jar "$artifact"
    ;;
esac
command -v "$1" >/dev/null 2>&1 || die 127 "$1 is not installed in this image: it runs $language artifacts"
if [ "$language" = python ] && "$1" -c '
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    env = json.loads(archive.read("environment.json"))
sys.exit(0 if env.get("entry_point") == "_sos_launcher:main" else 1)' "$artifact" 2>/dev/null; then
    say "preparing the artifact: unpacking its Python packages into ${SHIV_ROOT:-~/.shiv}"
    SOS_PREPARE_ONLY=1 "$1" "$artifact" ||
        die 70 "preparing the artifact failed (SOS_PREPARE_ONLY=1 $1 $artifact): see the" \
            "lines above; check that SHIV_ROOT is writable and has space"
fi
say "starting ${SOS_REVISION:-the artifact} ($language) on $HOST:$PORT"
exec "$@"
