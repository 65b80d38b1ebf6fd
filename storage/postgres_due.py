"""The PostgreSQL claim of due work: rows nobody holds, locked with ``SKIP LOCKED``,
in the claim order of ``storage.claim_order`` (migration 0008's partial indexes).

The claim's parameters: $1 owner, $2 lease_until, $3 now, $4 limit.
"""

from __future__ import annotations

from storage.claim_order import STARTING_SQL
from storage.columns import DUE_COLUMNS

# The due rows of one side of the claim order (migration 0008), oldest first, locked.
# LockRows sits under the LIMIT: a side locks only the rows it returns.
_CLAIMABLE = (
    "SELECT id FROM due_work WHERE kind {op} " + STARTING_SQL + " "
    "AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at, id "
    "LIMIT {limit} FOR UPDATE SKIP LOCKED"
)
# Work of runs under way first, then the work that starts runs (storage.claim_order).
# The starting side asks only for what the first left of ``limit``: each side locks
# what it returns, so the claim locks at most ``limit`` rows, all of which it claims
# (locked rows left unclaimed would be skipped by other nodes claiming meanwhile).
CLAIM = (
    f"WITH started AS ({_CLAIMABLE.format(op='NOT IN', limit='$4')}), "
    "starts AS ("
    + _CLAIMABLE.format(op="IN", limit="($4 - (SELECT count(*) FROM started))")
    # The outer LIMIT changes nothing but tells the planner how few rows to expect
    # (a join by primary key, not a scan of the table).
    + "), c AS (SELECT id FROM started UNION ALL SELECT id FROM starts LIMIT $4) "
    "UPDATE due_work AS d SET lease_owner = $1, lease_until = $2, fence = d.fence + 1 "
    f"FROM c WHERE d.id = c.id RETURNING {', '.join('d.' + c for c in DUE_COLUMNS.split(', '))}"
)

# Store.bring_sends_forward: $1 run id, $2 now.
BRING_SENDS_FORWARD = (
    "UPDATE due_work SET due_at = $2 WHERE run_id = $1 AND kind = 'dispatch' "
    "AND due_at > $2 AND (lease_until IS NULL OR lease_until < $2) RETURNING id"
)
