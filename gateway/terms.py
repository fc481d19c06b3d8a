"""The terms of use subscribers accept when applying; the version string is what they send."""

from __future__ import annotations

VERSION = "2026-01"

TEMPLATE = """\
憑證服務使用條款（版本 2026-01）

1. 您的金鑰對由您自己的電腦產生，私密金鑰不會離開您的設備，也不會交給本機構。
   請自行妥善保管私密金鑰與備份檔（PKCS#12），並設定足夠強度的保護密碼。
2. 您申請的憑證內容以註冊窗口（RA）核對證件後登錄的資料為準。
   資料如有變更，請洽註冊窗口辦理。
3. 簽章用憑證僅供數位簽章使用；加密用憑證僅供資料加密使用。
   請勿將憑證用於其他用途。
4. 如您懷疑私密金鑰遺失、外洩或遭他人使用，請立即通知註冊窗口廢止憑證。
5. 憑證到期前 {days} 日內可線上展期；逾期須重新申請。
6. 本網站帳號僅限本人使用；連續三次密碼錯誤將鎖定帳號，須洽註冊窗口重設密碼。
7. 本機構依法保存申請、簽發、下載、展期與廢止之紀錄。

Terms of use of the certificate service (version 2026-01)

1. Your key pair is generated on your own computer; the private key never leaves your device
   and is never given to the CA. Keep the private key and its PKCS#12 backup safe and protect
   them with a strong password.
2. Certificates contain the data that the registration authority (RA) entered after checking
   your documents. Ask the RA to update it when it changes.
3. Signing certificates are for digital signatures only; encryption certificates are for
   encrypting data only. Do not use a certificate for anything else.
4. If you suspect your private key was lost, disclosed or used by someone else, ask the RA to
   revoke the certificate at once.
5. A certificate can be renewed online during the {days} days before it expires; after that,
   apply again.
6. The portal account is personal. Three consecutive wrong passwords lock it until the RA
   resets the password.
7. The CA keeps records of applications, issuance, downloads, renewals and revocations as the
   law requires.
"""


def text(renewal_window_days: int) -> str:
    """The terms as served: the renewal window is the deployment's ``[policy]
    renewal_window_days``, not a number written into the text."""
    return TEMPLATE.replace("{days}", str(renewal_window_days))


TEXT = text(30)  # the text with the default window
