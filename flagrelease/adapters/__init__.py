"""Adapters: the only modules that talk to external systems.

docker_engine (Docker Engine and the BuildKit CLI), registry, oras_registry and
registry_auth (an OCI registry's HTTP API through oras-py, its basic and token
auth, and the credentials), local_registry (a registry
started on loopback), artifact_store (local directory and S3), ledger (the
SQLite index of releases), modelscope_hub (ModelScope), serve_client (HTTP to
the served model) and loopback (the rule that keeps that traffic on 127.0.0.1).
Deciding code lives in the steps and stays testable without these.
"""
