"""Admin for finance staff, one module per area; importing them registers every model.

- pricing: price book versions, contracts and the credit ledger.
- capacity: reservation versions and cluster rentals, added through their services.
- invoices: invoices with their lines, credit notes and debit notes, the lifecycle
  actions (finalize, mark paid, void, credit note) calling the services, PDF and CSV;
  each note's page shows the re-rating that issued it, if one did.
- rerating: the re-ratings issued, and the period preview where a finance manager
  applies a correction to every finalized invoice it changes, after confirming.
- operations: billing runs started through `billing_run_create`, the audit log,
  webhook endpoints and their delivery log.
- spend: budgets, set through `budget_put`, with this month's spend against each; the
  spend alerts sent, read-only.

Who may do what follows the finance groups (billing/permissions.py): viewers see
everything here and change nothing; managers act through the services.
"""

from billing.admin import capacity, invoices, operations, pricing, rerating, spend  # noqa: F401  (registration)
