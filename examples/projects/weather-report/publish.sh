#!/usr/bin/env bash
# Publish the rendered report to /data, which every run shares and which outlives
# the job's run folders. Each run writes its own file, named after its run uuid
# (ORCHEST_SESSION_UUID), so parallel runs of the parameter grid never collide.
# Job environment variables: REPORT_TITLE (heading), WEATHER_REPORT_DIR (where to
# publish, default /data/weather-report).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

: "${ORCHEST_SESSION_UUID:?is not set: run this file as a step of the weather pipeline}"
out_dir="${WEATHER_REPORT_DIR:-/data/weather-report}"
title="${REPORT_TITLE:-Weather report}"
body=build/report.md

if [ ! -s "$body" ]; then
    echo "publish: $body is missing; the Render report step writes it" >&2
    exit 1
fi

mkdir -p "$out_dir"
target="$out_dir/$ORCHEST_SESSION_UUID.md"
published="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
{
    echo "# $title"
    echo
    echo "- run: $ORCHEST_SESSION_UUID"
    echo "- pipeline: ${ORCHEST_PIPELINE_UUID:-unknown}"
    echo "- published: $published"
    echo
    cat "$body"
} >"$target.tmp"
mv "$target.tmp" "$target"

# One line per run; short appends from parallel runs do not interleave.
headline="$(head -n 1 "$body" | sed 's/^#* *//')"
printf '%s\t%s\t%s\n' "$published" "$ORCHEST_SESSION_UUID" "$headline" >>"$out_dir/index.tsv"
echo "publish: wrote $target"
