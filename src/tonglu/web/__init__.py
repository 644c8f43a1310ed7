"""The FastAPI application: pages and API for interviewers, room computers, remote participants,
supervisors, reviewers and auditors; accounts, RBAC, audit trail. The long-lived parts come from
`web.services.Services` (built once by `tonglu.app`) through the dependencies in `web.deps`.
"""
