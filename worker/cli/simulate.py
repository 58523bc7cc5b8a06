"""``simulate``: the Ozonetel simulator as a server, for demos and tests."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from worker.cli.app import EXIT_FAILED, EXIT_USAGE, fail


def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8089,
    campaigns: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="JSON or CSV of campaign -> numbers it holds."),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(help="Run the vendor's clock X times faster (windows, tokens).")
    ] = 1.0,
    latency: Annotated[str, typer.Option(help="ms: 0, fixed:50, uniform:0,300 or exp:100.")] = "0",
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 5xx.")] = 0.0,
    drop_rate: Annotated[float, typer.Option(help="Share of connections dropped.")] = 0.0,
    hang_rate: Annotated[float, typer.Option(help="Share of requests that hang.")] = 0.0,
    hang_s: Annotated[float, typer.Option(help="How long a hung request hangs, s.")] = 30.0,
    seed: Annotated[int | None, typer.Option(help="Seed the faults, for repeatable runs.")] = None,
    user: Annotated[str | None, typer.Option(help="Account user name (default: demo).")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="That account's API key (default: demo-key).")
    ] = None,
    auth_mode: Annotated[
        Literal["token", "apikey"], typer.Option(help="How the account authenticates.")
    ] = "token",
    rate_limit: Annotated[
        int, typer.Option(min=1, help="Requests allowed per vendor minute and API key.")
    ] = 100,
    token_ttl_s: Annotated[
        float, typer.Option(min=0.001, help="Token life, vendor seconds.")
    ] = 3600.0,
    token_budget: Annotated[
        int, typer.Option(min=1, help="Token generations allowed per vendor hour.")
    ] = 10,
) -> None:
    """Serve a faithful Ozonetel simulator (for demos and tests) until Ctrl-C.

    Point OZONETEL_BASE_URL at the printed URL, with OZONETEL_USERNAME=demo and
    OZONETEL_API_KEY=demo-key unless --user/--api-key say otherwise.
    """
    # Imported here: the simulator is a separate program that the rest of
    # the CLI does not need.
    from worker import simulator
    from worker.simulator.config import DEMO_API_KEY, DEMO_USER

    if (user is None) != (api_key is None):
        fail(EXIT_USAGE, "--user and --api-key go together")
    try:
        faults: dict[str, Any] = {
            "time_scale": time_scale,
            "latency": simulator.parse_latency(latency),
            "error_5xx_rate": error_rate,
            "drop_rate": drop_rate,
            "hang_rate": hang_rate,
            "hang_s": hang_s,
            "seed": seed,
            "rate_limit": rate_limit,
            "token_ttl_s": token_ttl_s,
            "token_budget": token_budget,
        }
        name, key = (user, api_key) if user and api_key else (DEMO_USER, DEMO_API_KEY)
        spec = simulator.AccountSpec(key, auth_mode)
        loaded = simulator.load_campaigns(campaigns) if campaigns else {}
        config = simulator.SimulatorConfig(accounts={name: spec}, campaigns=loaded, **faults)
    except ValueError as exc:
        fail(EXIT_USAGE, exc)
    try:
        simulator.run(config, host, port)
    except OSError as exc:
        fail(EXIT_FAILED, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
