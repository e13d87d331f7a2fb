"""The Strawberry GraphQL API for storefronts, customers and reviewers. Arrives with the GraphQL
issue. (This is `pointguard.graphql`; never a top-level `graphql`: it would shadow graphql-core.)
"""
