"""ClientPool's clients keep every idle connection up to their limit (httpcore's surplus-idle path stays shut)."""

from __future__ import annotations

from contextlib import ExitStack

from tests.fetch_fixture import serve

from kubeplay.fetch.clients import ClientPool, Tls


def test_idle_connections_to_several_origins_are_all_reused() -> None:
    # httpcore 1.0.9 closes idle connections once the pool holds more than its keep-alive limit, and does
    # so racily: a connection just handed to a waiting thread can be closed under it ([Errno 9] on a push).
    # With the keep-alive limit equal to the connection limit that path never runs, which shows here as
    # every connection being reused: four origins (a registry and its token realm, times two) on a pool
    # sized for two jobs, visited twice, open four connections, not more.
    with ExitStack() as stack, ClientPool(connections=2) as pool:
        servers = [stack.enter_context(serve({"f": b"x" * 10})) for _ in range(4)]
        session = pool.session(Tls(), None)
        for _ in range(2):
            for server in servers:
                response = session.client.get(f"{server.url}/ok/f")
                assert response.status_code == 200 and response.content == b"x" * 10
        assert [s.connections for s in servers] == [1, 1, 1, 1]
