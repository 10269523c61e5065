"""Every check a promotion must pass, for the CLI and HTTP alike: the version is not retired,
its index covers the stored notes, and the promotion guard (recorded) lets it through."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import Conflict
from service.registry.models import GuardedPromotion, ModelRegistry, PromotionRequest
from service.registry.notes import NoteStore
from service.registry.promotion_guard import PromotionPolicy
from service.registry.tables import ModelVersion
from service.settings import Settings


@dataclass(frozen=True)
class PromotionOverrides:
    """What an operator chose to override: `--force` (HTTP `?force=true`) sets both."""

    index: bool = False  # promote although the version's index misses stored notes
    regression: bool = False  # promote although the promotion guard refuses it

    @classmethod
    def from_flags(
        cls, *, force: bool, force_index: bool, force_regression: bool
    ) -> PromotionOverrides:
        return cls(index=force or force_index, regression=force or force_regression)


def promotion_policy(settings: Settings) -> PromotionPolicy:
    return PromotionPolicy(
        margin=settings.promotion_margin,
        task_margins=dict(settings.promotion_task_margins),
        requires_eval=settings.promotion_requires_eval,
    )


def check_index_coverage(store: NoteStore, row: ModelVersion, *, force: bool) -> None:
    """Refuse to promote a version whose index would miss stored notes (unless forced)."""
    live, covered = store.vectors.counts(row.id)
    if covered < live and not force:
        raise Conflict(
            f"the index for {row.ref} covers {covered} of {live} stored notes; run "
            f"`notespace index rebuild --model {row.ref}` first, or promote with force"
        )


class PromotionGate:
    """The promotion rules in force (NOTESPACE_PROMOTION_* settings) over one registry."""

    def __init__(self, registry: ModelRegistry, store: NoteStore, settings: Settings) -> None:
        self.registry = registry
        self._store = store
        self._policy = promotion_policy(settings)
        self._requires_complete_index = settings.promote_requires_complete_index

    def authorise(
        self,
        row: ModelVersion,
        overrides: PromotionOverrides,
        *,
        requested_by: str,
        fallback_ref: str | None,
    ) -> GuardedPromotion | None:
        """Raise if `row` may not be promoted; the guard's record otherwise (None when `row`
        is already active). `fallback_ref` is compared against when the name has no active
        version: the version serving (HTTP) or the single active model (CLI)."""
        if row.status == "retired":
            raise Conflict(f"{row.ref} is retired and cannot be promoted")
        if self._requires_complete_index:
            check_index_coverage(self._store, row, force=overrides.index)
        request = PromotionRequest(requested_by, overrides.regression, fallback_ref)
        return self.registry.guard_promotion(row.ref, self._policy, request)

    def promote(
        self,
        ref: str,
        overrides: PromotionOverrides,
        *,
        requested_by: str,
        fallback_ref: str | None,
    ) -> tuple[ModelVersion, GuardedPromotion | None]:
        """Authorise and promote in the registry (the CLI path; a running service swaps to
        it on its next registry poll). Returns the promoted row and the guard's record."""
        row = self.registry.get(ref)
        guarded = self.authorise(
            row, overrides, requested_by=requested_by, fallback_ref=fallback_ref
        )
        return self.registry.promote(ref, guarded=guarded), guarded
