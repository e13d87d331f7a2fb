"""The GraphQL API at `/graphql` (Strawberry on Starlette), one schema for every caller.

- `endpoint`: bounds the request and verifies the caller before Strawberry runs anything.
- `auth`, `customer_tokens`: who is calling (API keys with roles, customers' tokens).
- `context`: what resolvers get: the database, the caller, the request's `now`.
- `customer`, `rewards`, `checkout`: the customer's own view (`me`), what the customer does
  from their account page (rewards, leaderboard, the program in words, referral link,
  redeeming without a cart), and the storefront's checkout.
- `review`: risk reviewers' fraud cases: the queue, one case, and deciding it.
- `admin`: the shop admin's program, keys, secret, analytics and dead letters; the
  operator's merchant creation.
- `rate_limit`, `persisted`: a per-credential rate limit; persisted queries.
- `problems`, `errors`: expected failures as typed results; everything else as response
  errors with a `code`, never a stack trace.
- `schema`: the schema and its limits; `docs/schema.graphql` is it printed.

Resolvers stay thin: the program, the ledger and the fraud guard hold every rule.
(This is `pointguard.graphql`; never a top-level `graphql`: it would shadow graphql-core.)
"""
