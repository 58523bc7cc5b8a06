"""The two vendor endpoints over HTTP, with faults in front of the vendor's logic.

Order of events for one request, and why:

1. stamp the arrival (``time.monotonic()`` as the handler starts) and log it
   at once, so a request that later hangs or is dropped is already visible;
2. delete endpoint only: count the arrival in its API key's sliding window.
   Every arrival counts, rejected or faulted ones included: the limit is on
   what the server receives;
3. roll the fault. A 5xx comes from a gateway in front of the vendor, so the
   vendor never sees the request. A drop or a hang happens *after* the
   vendor acted: the delete (or the token) took effect and only the answer
   is lost or late, which is the case a client finds hardest (a retry gets
   ``No Record Found``);
4. decide the vendor's answer, then wait out the latency (and the hang), then
   send it.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from worker.simulator import vendor
from worker.simulator.decisions import DeleteRequest, judge_delete, judge_token, peek_record
from worker.simulator.faults import GATEWAY_ERRORS, FaultName, gateway_error_page
from worker.simulator.requestlog import Endpoint, RequestRecord
from worker.simulator.state import STATE_KEY, SimulatorState
from worker.simulator.vendor import VendorAnswer, encode_body

DELETE_PATH = "/ca_apis/deleteCampaignData"
CATOKEN_PATH = "/ca_apis/CAToken/generateToken"


def _arrive(state: SimulatorState, endpoint: Endpoint, api_key: str | None) -> RequestRecord:
    return state.log.arrive(
        RequestRecord(
            t=time.time(),
            mono=time.monotonic(),
            endpoint=endpoint,
            api_key_id=state.key_ids.name(api_key),
        )
    )


async def _gateway_error(state: SimulatorState, record: RequestRecord) -> web.Response:
    status, reason = state.rng.choice(GATEWAY_ERRORS)
    record.status, record.message = status, "5xx"
    await _delay(state, fault=None, latency=True)
    page = gateway_error_page(status, reason)
    return web.Response(status=status, text=page, content_type="text/html")


async def _delay(state: SimulatorState, *, fault: FaultName | None, latency: bool) -> None:
    # Draw from the generator only when latency applies, so that seeded runs
    # do not shift with settings that do not matter.
    seconds = state.faults.latency.sample_s(state.rng) if latency else 0.0
    if fault == "hang":
        seconds += state.faults.hang_s
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _deliver(
    request: web.Request,
    state: SimulatorState,
    record: RequestRecord,
    answer: VendorAnswer,
    fault: FaultName | None,
    *,
    latency: bool = True,
) -> web.StreamResponse:
    record.message = answer.message
    if fault == "drop":
        # Close the socket with nothing written: the client sees the server
        # disconnect. aiohttp skips writing the response below to a closed
        # transport. status stays None: no answer was sent.
        if request.transport is not None:
            request.transport.close()
        return web.Response()
    record.status = answer.http_status
    await _delay(state, fault=fault, latency=latency)
    return web.Response(
        status=answer.http_status,
        text=encode_body(answer, state.config.double_encode),
        content_type="application/json",
    )


async def delete_campaign_data(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    api_key = request.headers.get("apiKey")
    record = _arrive(state, "delete", api_key)
    over_limit = False
    if api_key is not None:
        in_window = state.rate.record(api_key, record.mono)
        state.log.note_window(in_window)
        over_limit = in_window > state.config.rate_limit
        if over_limit:
            # A violation is an arrival beyond the limit, whatever its fate.
            state.log.violations += 1
    body = await request.read()
    record.campaign, record.phone = peek_record(body)
    fault = state.faults.roll(state.rng)
    record.fault = fault
    if fault == "5xx":
        return await _gateway_error(state, record)

    if api_key is None:
        # No key, nothing to count the arrival against: checked before the limit.
        answer = vendor.API_KEY_MISSING
    elif over_limit:
        answer = vendor.RATE_LIMITED
    else:
        parsed = DeleteRequest(api_key, request.headers.get("Authorization"), body)
        answer = judge_delete(state, parsed, wall=record.t)
    return await _deliver(request, state, record, answer, fault)


async def generate_token(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    api_key = request.headers.get("apiKey")
    record = _arrive(state, "token", api_key)
    body = await request.read()
    fault = state.faults.roll(state.rng) if state.config.faults_on_token_endpoint else None
    record.fault = fault
    if fault == "5xx":
        return await _gateway_error(state, record)
    answer = judge_token(
        state,
        api_key=api_key,
        authorization=request.headers.get("Authorization"),
        body=body,
        wall=record.t,
        mono=record.mono,
    )
    # Latency is a fault too: the token endpoint stays prompt unless asked.
    return await _deliver(
        request, state, record, answer, fault, latency=state.config.faults_on_token_endpoint
    )
