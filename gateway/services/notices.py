"""Renewal notices: one e-mail per certificate when it enters its renewal window.

``NoticeService.run_once`` claims due certificates in the database (an INSERT on the notice
table's primary key, rows locked with SKIP LOCKED, so several gateways never send twice), sends
each notice over SMTP (stdlib ``smtplib`` in a thread) and records it as sent. A failed send
keeps the claim but lets a later round retry; a claim never sent (a gateway died) is taken over
after ``STALE_CLAIM``. An empty ``[smtp] host`` switches notices off.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from datetime import UTC, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import asyncpg

from db import audit
from db.queries import renewals as renewal_q
from gateway.clock import Clock

log = logging.getLogger("gateway.notices")
STALE_CLAIM = timedelta(minutes=10)
SMTP_TIMEOUT = 20.0
USAGE_ZH = {"signing": "簽章用", "encryption": "加密用"}
USAGE_EN = {"signing": "signing", "encryption": "encryption"}


class NoticeService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        window_days: int,
        smtp_host: str,
        smtp_port: int,
        sender: str,
        portal_url: str,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.window = timedelta(days=window_days)
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.sender = sender
        self.portal_url = portal_url

    @property
    def enabled(self) -> bool:
        return bool(self.smtp_host)

    def message(self, target: renewal_q.NoticeTarget) -> EmailMessage:
        until = target.not_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = target.email
        msg["Subject"] = "憑證即將到期，請辦理展期 / Your certificate expires soon"
        msg["Date"] = format_datetime(self.clock().astimezone(UTC))
        msg["Message-ID"] = make_msgid(domain="ca.invalid")
        msg.set_content(
            f"{target.name} 您好：\n\n"
            f"您的{USAGE_ZH.get(target.usage, target.usage)}憑證（序號 {target.serial}）將於 "
            f"{until} 到期。\n請在到期前登入 {self.portal_url} 辦理展期；逾期須重新申請。\n\n"
            f"Dear {target.name},\n\n"
            f"your {USAGE_EN.get(target.usage, target.usage)} certificate (serial "
            f"{target.serial}) expires on {until}.\nLog in to {self.portal_url} (account "
            f"{target.account}) and renew it before then; after it expires you must apply "
            "again.\n"
        )
        return msg

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
            smtp.send_message(msg)

    async def run_once(self) -> int:
        """Send the notices that are due; returns how many were sent."""
        if not self.enabled:
            return 0
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            targets = await renewal_q.claim_notices(
                conn,
                now=now,
                window_start_before=now + self.window,
                stale_claim_before=now - STALE_CLAIM,
            )
        sent = 0
        for target in targets:
            try:
                await asyncio.to_thread(self._send, self.message(target))
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("renewal notice not sent: %s", exc, extra={"serial": target.serial})
                async with self.pool.acquire() as conn:
                    await renewal_q.notice_failed(
                        conn, target.certificate_id, str(exc), retry_claimed_at=now - STALE_CLAIM
                    )
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                await renewal_q.notice_sent(conn, target.certificate_id, self.clock())
                await audit.append(
                    conn,
                    actor="system",
                    action="renewal_notice_sent",
                    target=target.serial,
                    details={"account": target.account, "to": target.email},
                    at=self.clock(),
                )
            sent += 1
        return sent
