#!/usr/bin/env bash
# Regenerates the media the synthetic origin re-times into every segment. Run once by hand
# (the output is committed; the origin never runs ffmpeg for the synthetic stream):
#
#   servers/origin/media/make.sh
#
# gop.h264  one closed GOP: 2 s of testsrc, 256x144, 25 fps, H.264 Constrained Baseline
#           (no B-frames, so any prefix of the GOP decodes), an access unit delimiter
#           before every picture and SPS/PPS before the IDR, SEI stripped.
# tone.aac  1.6 s of a 440 Hz tone, AAC-LC, 48 kHz mono, ADTS framed: 1.6 s holds a whole
#           number of periods, so looping the frames keeps the phase.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel warning -y \
  -f lavfi -i testsrc=size=256x144:rate=25:duration=2 \
  -c:v libx264 -profile:v baseline -level 1.3 -preset veryslow -tune zerolatency \
  -g 50 -keyint_min 50 -sc_threshold 0 -bf 0 -b:v 120k -maxrate 200k -bufsize 240k \
  -x264-params aud=1:repeat-headers=1 -pix_fmt yuv420p \
  -bsf:v filter_units=remove_types=6 -f h264 gop.h264
ffmpeg -hide_banner -loglevel warning -y \
  -f lavfi -i sine=frequency=440:sample_rate=48000:duration=1.6 -af volume=0.3 \
  -ac 1 -c:a aac -b:a 40k -f adts tone.aac
