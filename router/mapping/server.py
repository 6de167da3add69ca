"""Back-end events (`POST /sidecar/events`) through the same rule table as browsers'."""

from __future__ import annotations

import logging

import msgspec

from ..enrich.flow import FlowProblem
from ..events import MetricsContext
from ..records import ActivityEvent, FlowEvent, RecordBatch
from .builder import FLOW_COMPLETE, RecordBuilder
from .subject import RequestInfo, ServerItem, Subject

log = logging.getLogger("metrics.context")


class Pipeline(RecordBuilder):
    """Builds records from requests: browsers' (RecordBuilder) and back-end services'."""

    def check_context(self, context: MetricsContext | None, now: int) -> str | None:
        """None when the context carries a valid flow, else the reason: a counter tag.

        Tags are snake_case, as every counter's, so statsd and Prometheus show them alike.
        """
        if context is None:
            return MISSING_CONTEXT
        problem = self.signer.check(context.flowId, context.flowBeginTime, now)
        return None if problem is None else problem.value

    def process_server_events(self, items: list[ServerItem], received: int) -> RecordBatch:
        """The records of one batch of back-end events, through the same rule table as browsers'.

        A flow event whose context does not verify loses its flow fields and goes on as a
        non-flow event; a flow-complete signal with a valid flow adds `flow.complete` and
        `flow.complete.<flowType>` (the group's `complete`, unless the event's own rule
        already emitted it, as `account.reset` does).
        """
        out = RecordBatch()
        stats = self.stats
        match = self.rules.match
        unmapped = 0
        for item in items:
            event, spec = item.event, item.spec
            context = item.context
            valid = False
            if spec.flow:
                reason = self.check_context(context, received)
                if reason is None:
                    valid = True
                else:
                    stats.incr("server_events.context.invalid", 1, {"reason": reason}, 1.0)
                    log.info(
                        "metrics.context.validate: %s: %s", event.event, _CONTEXT_WORDS[reason]
                    )
                    if context is not None:
                        context = msgspec.structs.replace(context, flowId=None, flowBeginTime=None)
            elif context is not None and context.flowId is not None:
                # Not a flow event: the context's other fields still apply.
                context = msgspec.structs.replace(context, flowId=None, flowBeginTime=None)
            req = RequestInfo(received=received, user_agent=event.user_agent or "")
            subject = Subject.from_server_event(event, context, received)
            if spec.activity and event.uid is not None:
                # The auth server's activityEvent line (lib/metrics/events.js).
                out.activity.append(
                    ActivityEvent(
                        event=event.event,
                        uid=event.uid,
                        device_id=subject.device_id,
                        service=event.service,
                        userAgent=event.user_agent,
                    )
                )
            time = event.time or received
            shared = self._templates(subject, req)
            first = len(out.amplitude)
            if not self._emit_named(out, event.event, time, subject, req, shared):
                unmapped += 1
            if not valid:
                continue
            begin = subject.flow_begin_time or 0
            flow_fields = self._flow_fields(subject, req)
            out.flow.append(
                FlowEvent(event=event.event, flow_time=time - begin, time=time, **flow_fields)
            )
            if not spec.flow_complete:
                continue
            out.flow.append(
                FlowEvent(event=FLOW_COMPLETE, flow_time=time - begin, time=time, **flow_fields)
            )
            flow_type = (context.flowType if context else None) or spec.flow_type
            stats.incr("server_events.flow_complete", 1, {"flow_type": flow_type or "none"}, 1.0)
            if flow_type:
                name = f"{FLOW_COMPLETE}.{flow_type}"
                complete = match(name)
                done = {e.event_type for e in out.amplitude[first:]}
                if complete is not None and complete.event_type not in done:
                    self._emit(out, complete, time, subject, req, shared)
        stats.incr("server_events.accepted", len(items), sample_rate=1.0)
        if len(items) > unmapped:
            stats.incr("server_events.mapped", len(items) - unmapped, sample_rate=1.0)
        if unmapped:
            stats.incr("server_events.unmapped", unmapped, sample_rate=1.0)
        return out


MISSING_CONTEXT = "missing_context"
# The log line words each reason as FxA's does (packages/fxa-auth-server/lib/metrics/context.js).
_CONTEXT_WORDS = {
    MISSING_CONTEXT: "missing context",
    FlowProblem.MISSING_FLOW_ID: "missing flowId",
    FlowProblem.MISSING_BEGIN_TIME: "missing flowBeginTime",
    FlowProblem.EXPIRED: "expired flowBeginTime",
    FlowProblem.FUTURE: "expired flowBeginTime",
    FlowProblem.INVALID_FLOW_ID: "invalid flowId",
    FlowProblem.BAD_SIGNATURE: "invalid signature",
}
