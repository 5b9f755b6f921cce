"""One ib_async client to TWS / IB Gateway, shared by the broker and the quote recorder.

Created lazily (importing ib_async only when IB is used), connected on demand with the caller's
client id, its events hooked once (a reconnect reuses the same ``IB`` object and its events).
"""

from __future__ import annotations

import logging

from ifd_core.settings import IBSettings

log = logging.getLogger(__name__)


class IBConnection:
    # What a failed connect raises; each user says what it means for it.
    unreachable: type[Exception] = ConnectionError

    def __init__(self, settings: IBSettings, ib=None) -> None:
        self.s = settings
        self._ib = ib
        self._hooked = False

    @property
    def ib(self):
        if self._ib is None:
            from ib_async import IB

            self._ib = IB()
        return self._ib

    @property
    def connected(self) -> bool:
        return self._ib is not None and self._ib.isConnected()

    def _open(self, client_id: int, *, readonly: bool = False) -> None:
        ib = self.ib
        if ib.isConnected():
            return
        try:
            ib.connect(
                self.s.host,
                self.s.port,
                clientId=client_id,
                timeout=self.s.connect_timeout_s,
                readonly=readonly,
            )
        except (OSError, TimeoutError) as exc:
            raise self.unreachable(
                f"cannot reach TWS / IB Gateway at {self.s.host}:{self.s.port}: {exc}; is it "
                "running with the API enabled (Configure > API > Settings)?"
            ) from None
        if not self._hooked:
            self._hook(ib)
            self._hooked = True

    def _hook(self, ib) -> None:
        """Subscribe to the client's events (once per IB object)."""

    def wait(self, seconds: float) -> None:
        """Run ib_async's loop for ``seconds``. A dropped connection is not an error here: it is
        logged and ``connected`` turns False; the user reconnects (and reconciles)."""
        if not self.connected:
            return
        try:
            self.ib.sleep(seconds)
        except ConnectionError as exc:
            log.warning("IB connection lost: %s", exc)

    def close(self) -> None:
        if self._ib is not None and self._ib.isConnected():
            self._ib.disconnect()
