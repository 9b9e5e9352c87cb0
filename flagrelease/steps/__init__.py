"""The pipeline steps, in the order a release runs them.

preflight -> base_image -> weights -> render -> build -> smoke -> bench
(loadgen, accuracy) -> gate -> publish -> report (card)

Each step is a plain function over typed values (flagrelease.results,
flagrelease.record); it talks to the outside world only through
flagrelease.adapters. The Prefect flows in flows/ wire the steps together.
"""
