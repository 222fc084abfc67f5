"""The policy activity goes on with the turn's next steps, up to the first that needs the orchestration.

Every activity a turn schedules costs it an orchestration episode: the call is stored, run, its
result stored, and the orchestration woken to replay up to it. After the policy read, a turn's
next steps are mostly short activities of this app: for an agent without MCP tools, the whole
rest of a simple turn is its conclusion (archive, then publish). So the first policy read sends
the turn itself (its event, the agent's state, its start time) instead of the policy request,
and the activity runs the turn's own code (``turn.Turn``, the code the orchestration runs) on a
local context: the code's first call is the policy read, answered here; its next activity calls
run here, in order, until the code asks for something only the orchestration can give (an
entity, a timer, an external event or human decision, a model call of the conversation, whose
result is checkpointed on its own) or a call fails, or the turn is concluded. The activity
returns the policy with those results and the time they ran at, on the orchestration's clock:
the time it asked (the turn's start) advanced by the time taken here, so this needs no clock of
the orchestration's (a test's virtual one stays consistent). The orchestration runs the same
code, takes the results in the same order instead of scheduling the calls, and reads the same
clock (``Turn.now``), so it computes the same record that was archived.

The guarantee changes in one way: the steps run here are checkpointed together, with the policy
read. If the process dies during them, the policy activity runs again and repeats them all,
where separate activities would repeat only the one that was running. Activities run at least
once anyway, so each of these steps is already idempotent (the archive and the audit chain by
turn id, outputs by fixed message ids, tool requests by call id); what a repeat costs is the
purpose check's and a summary line's model calls again. ``AOS_TURN_INLINE_STEPS=off`` gives each
step its own activity.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

import orjson

from kernel import settings
from realm_of_agents import activities, turn
from realm_of_agents.services import services
from realm_of_agents.tracing import run_traced

log = logging.getLogger("aos.realm.turn")
SETTING = "AOS_TURN_INLINE_STEPS"

Step = Callable[[Any], Awaitable[Any]]
#: The steps that may run inline: the function, and whether its activity binding traces it (a span).
INLINE: dict[str, tuple[Step, bool]] = {
    turn.ASSESS: (activities.assess, True),
    turn.TOOL: (activities.tool_call, True),
    turn.TOOL_REQUEST: (activities.tool_request, True),
    turn.CONCLUDE: (activities.conclude, False),
    turn.ARCHIVE: (activities.archive, True),
    turn.PUBLISH: (activities.publish, True),
    turn.SUMMARIZE: (activities.summarize, False),
    turn.POLICY_RECORD: (activities.policy_record, False),
}


def enabled(environ: Any = None) -> bool:
    """AOS_TURN_INLINE_STEPS: on (the default) or off; anything else is an error naming the setting."""
    value = settings.get(SETTING, environ).strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"app setting {SETTING} must be on or off, got {value!r}")


async def policy(request: dict[str, Any]) -> dict[str, Any]:
    """The policy activity (``turn.POLICY``). A request carrying the turn (``turn``: its first
    read) gets the policy for the request the turn's code makes, plus ``inline``: ``at``, the time
    the steps after it ran at, and ``steps``, their names and results in order (absent when none
    ran). Any other request is the policy read as ``activities.policy`` answers it."""
    seed = request.get("turn")
    if seed is None:
        return await activities.policy(request)
    began = time.monotonic()
    started = datetime.fromisoformat(seed["started"])
    context = _LocalContext(started)
    local = turn.Turn(context, request["agent_id"], request["turn_id"], seed["event"], seed["state"],
                       started=seed["started"], inline_ready=False)
    steps = local.work()
    try:
        first = next(steps)
        if not (isinstance(first, _Call) and first.name == turn.POLICY):
            raise RuntimeError(f"the turn's first step is {first!r}, not the policy read")
        found = await activities.policy(first.payload)
        if enabled(services().environ):
            # the orchestration's clock when it asked (the turn's start), advanced by the time taken
            # here: the time the orchestration would read next, with no clock of its own needed here
            context.current_utc_datetime = started + timedelta(seconds=time.monotonic() - began)
            ran = await _run_inline(steps, _as_received(found))
            if ran:
                found["inline"] = {"at": context.current_utc_datetime.isoformat(), "steps": ran}
        return found
    finally:
        steps.close()


async def _run_inline(steps: Any, answer: Any) -> list[list[Any]]:
    """Send ``answer`` to the turn's code and run its activity calls while they may run here;
    returns ``[name, result]`` of each that ran (a call that failed is left to the orchestration)."""
    ran: list[list[Any]] = []
    try:
        call = steps.send(answer)
        while isinstance(call, _Call) and call.name in INLINE:
            function, traced = INLINE[call.name]
            payload = _as_received(call.payload)
            try:
                result = _as_received(await (run_traced(call.name, function, payload) if traced else function(payload)))
            except Exception as error:  # noqa: BLE001 - the orchestration makes this call itself, with its retries
                log.info("turn step %s failed inline (%s); the turn schedules it", call.name, type(error).__name__)
                break
            ran.append([call.name, result])
            call = steps.send(_as_received(result))
    except StopIteration:  # the turn was concluded
        pass
    except Exception:  # a fault in the turn's code: the orchestration meets it too, past the results kept here
        log.warning("the turn's code failed while running its steps inline", exc_info=True)
    return ran


def _as_received(value: Any) -> Any:
    """``value`` as an activity's input or result reaches the other side: through JSON, so both runs
    of the turn's code see equal values and neither sees the other's later changes."""
    try:
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except TypeError:  # orjson refuses it (an integer beyond 64 bits, a lone surrogate): as the SDK does
        return json.loads(json.dumps(value))


@dataclass(frozen=True)
class _Call:
    """An activity call the turn's code made on the local context."""

    name: str
    payload: Any


class _Durable:
    """A task only the orchestration can run (a timer, an external event): the inline steps end there."""

    def cancel(self) -> None:
        """The code cancels a timer it no longer waits for; here there is none."""


class _LocalContext:
    """The part of an orchestration context ``turn.Turn`` uses, for running it in an activity (a
    method it does not have fails the inline run there, and the orchestration goes on from it)."""

    def __init__(self, now: datetime) -> None:
        self.current_utc_datetime = now

    def call_activity(self, name: str, input_: Any = None) -> _Call:
        return _Call(name, input_)

    def call_activity_with_retry(self, name: str, retry_options: Any, input_: Any = None) -> _Call:
        return _Call(name, input_)

    def create_timer(self, fire_at: datetime) -> _Durable:
        return _Durable()

    def wait_for_external_event(self, name: str) -> _Durable:
        return _Durable()

    def task_any(self, tasks: list[Any]) -> _Durable:
        return _Durable()

    def set_custom_status(self, status: Any) -> None:
        """The orchestration sets it when it runs the same code."""
