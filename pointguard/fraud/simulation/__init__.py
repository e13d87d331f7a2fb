"""A seeded storefront: a stream of webhook bodies with labelled attacks mixed in, for trying
the fraud guard (and, later, backtesting it) on traffic whose truth is known.

The same settings give the same stream, byte for byte: every choice is drawn from one
`random.Random(seed)` and time comes from the settings' start, never the wall clock.
docs/fraud.md#simulator describes the stream's format. One module per job:

- `period`: the days simulated, and the hours people shop at;
- `catalogue`: what is sold, when promotions run, what a basket holds;
- `identities`: emails, phones, addresses, devices, cards, networks, referral codes;
- `events`: the webhook body each event type gets, with the truth about it;
- `customers`: honest households and what they do;
- `attacks`: each labelled attack;
- `stream`: all of it merged in time order and written as JSON lines;
- `sender`: a stream posted as signed Standard Webhooks.
"""
