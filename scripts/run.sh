#!/usr/bin/env bash
# Set up everything, start both Asterisk instances (gateway and carrier
# simulator), create a demo API key, and run the API and a dispatcher in the
# foreground. Ctrl-C stops the gateway; `amivono asterisk down` stops Asterisk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

amivono migrate
amivono asterisk up
key=$(amivono keys create demo)
# The demo account sends from its own number (AMIVONO_SENDER_POLICY=owned).
amivono numbers add demo +46736265400 >/dev/null
base="${AMIVONO_PUBLIC_BASE_URL:-http://127.0.0.1:8080}"
cat <<MSG

Amivono is starting on $base. Demo API key (account "demo"):

  export AMIVONO_KEY=$key

Send the spec's SMS, repeated every minute until its link is opened:

  curl -si $base/messages/sms -H "Authorization: Bearer \$AMIVONO_KEY" \\
       -H "Content-Type: application/json" -d '{"from": "+46736265400", "to": "+46736265449", "message": "This is an sms message.", "repeat": 10, "repeat_interval": 1}'

Upload the demo alert and call a phone with it (the carrier simulator answers):

  .venv/bin/amivono files upload emergency.mp3 sounds/emergency.mp3 --key \$AMIVONO_KEY
  curl -si $base/messages/voice -H "Authorization: Bearer \$AMIVONO_KEY" \\
       -H "Content-Type: application/json" -d '{"from": "+46736265400", "to": "+46736265449", "file": "emergency.mp3"}'

The phone answers (a reply ends the repeats; STOP opts it out):

  .venv/bin/amivono carrier send-sms +46736265449 +46736265400 "Got it"
  curl -s $base/messages/inbound -H "Authorization: Bearer \$AMIVONO_KEY"

See what the phone received:     .venv/bin/amivono carrier messages   (SMS)
                                 .venv/bin/amivono carrier calls      (calls, with recordings)
Operator's view:                 .venv/bin/amivono status
Watch the gateway console:       .venv/bin/amivono asterisk console gateway
Every setting (AMIVONO_*):       .venv/bin/amivono settings

MSG
exec amivono run
