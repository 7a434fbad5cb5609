"""The gateway's side of consent: the facts ``consent`` decides on, kept in the store.

``information`` reads consents, agreements, emergencies and the network directory from the
store; ``grants`` keeps the consent and agreement conditions as rows that the SQL of every read
path filters on (``gateway.store.search_sql.organization_visible``), in the same transaction as
the change that alters them, so a revocation holds from the next request in every process.
"""

from gateway.policy.information import PolicyInformation

__all__ = ["PolicyInformation"]
