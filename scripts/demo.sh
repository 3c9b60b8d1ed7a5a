#!/usr/bin/env bash
# Builds the trust material of a local federation from the embedded member profiles: a key
# per member, a roster of all 32 members signed by a fresh federation authority, and one
# signed advert per member, each verified against the roster.
# Usage: scripts/demo.sh [OUT_DIR]   (default: ./devnet-data/demo, replaced on each run)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-devnet-data/demo}
cargo build --release --quiet -p aiguillage-node
bin=$PWD/target/release/aiguillage
rm -rf "$out"; mkdir -p "$out/keys" "$out/adverts"

"$bin" profile check config
"$bin" keys generate --out "$out/keys/authority.pem" >/dev/null
authority=$("$bin" keys show "$out/keys/authority.pem" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])')
"$bin" roster new --federation eurohpc-ai-factories --out "$out/roster.toml" >/dev/null

for profile in config/factories/*.toml config/antennas/*.toml; do
  id=$(basename "$profile" .toml)
  role=$(sed -n 's/^role = "\(.*\)"/\1/p' "$profile")
  country=$(sed -n 's/^country = "\(.*\)"/\1/p' "$profile")
  links=$(sed -n 's/^linked_factories = \[\(.*\)\]/\1/p' "$profile" | tr -d '" ' | tr ',' ' ')
  args=()
  for l in $links; do args+=(--linked "$l"); done
  "$bin" keys generate --out "$out/keys/$id.pem" >/dev/null
  "$bin" roster add "$out/roster.toml" --id "$id" --key-file "$out/keys/$id.pem" \
    --role "$role" --country "$country" "${args[@]}" >/dev/null
done
"$bin" roster sign "$out/roster.toml" --authority-key "$out/keys/authority.pem" --out "$out/roster.cbor"
"$bin" roster show "$out/roster.cbor" --authority "$authority"

for profile in config/factories/*.toml config/antennas/*.toml; do
  id=$(basename "$profile" .toml)
  "$bin" advert build --profile "$profile" --key "$out/keys/$id.pem" --seq 1 --ttl 1h \
    --out "$out/adverts/$id.cbor" >/dev/null
  "$bin" advert inspect "$out/adverts/$id.cbor" --roster "$out/roster.cbor" --authority "$authority" >/dev/null
done
echo "all $(ls "$out/adverts" | wc -l) adverts verified against roster $out/roster.cbor (authority $authority)"
"$bin" advert inspect "$out/adverts/lu-l-aif.cbor" --roster "$out/roster.cbor" --authority "$authority"
