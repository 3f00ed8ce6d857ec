#!/bin/sh
# The system packages of one stage of ops/docker/Dockerfile, from Debian's apt, on either
# base: python:3.11-slim (Python in /usr/local) or a bare Debian bookworm (none: Debian's
# python3 3.11 is installed). Run as root by the Dockerfile: system.sh build|runtime.
set -eu
stage="$1"
packages=""
if ! command -v python3 >/dev/null 2>&1; then
  packages="python3"
  [ "$stage" = build ] && packages="$packages python3-venv"
fi
if [ "$stage" = runtime ]; then
  # tts: espeak-ng and sox; render: ffmpeg and a font; tini: PID 1; certificates: downloads
  packages="$packages espeak-ng sox ffmpeg fonts-dejavu-core tini ca-certificates"
fi
if [ -n "$packages" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $packages >/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
fi
if [ "$stage" = runtime ]; then
  # Debian's ffmpeg pulls in Mesa's OpenGL and Vulkan drivers and the LLVM they compile
  # shaders with (about 180 MB) for graphics devices a container has none of; the ffmpeg
  # command line links none of them (the GL loader stays). The smoke test below runs each
  # media tool once without them.
  unneeded="$(dpkg-query -W -f '${Package}\n' 'libllvm*' 'libz3-*' libgl1-mesa-dri libglx-mesa0 \
    mesa-vulkan-drivers 2>/dev/null || true)"
  if [ -n "$unneeded" ]; then
    # shellcheck disable=SC2086
    dpkg --purge --force-depends $unneeded >/dev/null 2>&1
  fi
  cd /tmp
  espeak-ng -w smoke.wav "pgcue" && sox smoke.wav -n stat 2>/dev/null
  ffmpeg -loglevel error -f lavfi -i color=c=red:s=64x64:d=0.2 -vf "drawtext=text=ok:fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" -c:v libx264 -f mp4 smoke.mp4
  rm -f smoke.wav smoke.mp4
fi
if [ "$stage" = runtime ]; then
  uid="${PGCUE_UID:-10001}"
  groupadd --system --gid "$uid" pgcue
  useradd --system --uid "$uid" --gid "$uid" --home-dir /var/lib/pgcue --no-create-home --shell /usr/sbin/nologin pgcue
fi
python3 --version
