"""Portal texts in Traditional Chinese (the default) and English.

Menu and field names follow the operations manual the portal is modelled on; every sentence here
is our own. Templates use ``t(key)``; the keys under ``JS_KEYS`` are also handed to the browser
code as a JSON data block (not a script) so its messages speak the page's language.
"""

from __future__ import annotations

DEFAULT = "zh-TW"
LANGS = ("zh-TW", "en")

ZH: dict[str, str] = {
    # frame
    "site": "電子憑證作業網站",
    "ra_site": "註冊窗口 (RA) 作業網站",
    "lang_other": "English",
    "home": "回首頁",
    "logout": "登出",
    "menu": "功能選單",
    "noscript": "本網站需要啟用 JavaScript。",
    # menu
    "m_apply": "憑證申請",
    "m_renew": "憑證展期(更新)",
    "m_download": "憑證下載",
    "m_revoke": "憑證廢止",
    "m_info": "檢視憑證資訊",
    "m_password": "網站密碼修改",
    "m_import": "匯入復原",
    # login
    "login_title": "用戶登入",
    "account": "帳號",
    "password": "密碼",
    "captcha": "驗證碼",
    "captcha_refresh": "換一張",
    "captcha_alt": "驗證碼圖片",
    "login": "登入",
    "login_hint": "請輸入密碼單上的網站帳號與密碼，再輸入圖片中的驗證碼。",
    "err_invalid_credentials": "帳號或密碼不正確。連續三次錯誤將鎖定帳號。",
    "err_invalid_captcha": "驗證碼不正確或已過期，請輸入新圖片中的驗證碼。",
    "err_account_locked": "帳號已鎖定（連續三次密碼錯誤）。請填寫密碼重新設定申請單，"
                          "攜帶身分證明文件至註冊窗口 (RA) 辦理，領取新的密碼單後再登入。",
    "err_network": "無法連線到伺服器，請稍後再試。",
    "err_rate_limited": "嘗試次數過多，請稍候再試。",
    "err_busy": "系統忙碌中，請稍後再試。",
    "err_generic": "作業失敗：",
    "err_session": "登入已逾時，請重新登入。",
    # home
    "home_title": "歡迎使用電子憑證作業網站",
    "home_text": "請由左側選單選擇作業。首次申請請先執行「憑證申請」，再執行「憑證下載」，"
                 "並立即匯出備份。",
    "reg_data": "申請人註冊資料",
    "id_number": "身分證號或統編",
    "name": "用戶名稱",
    "subscriber_name": "用戶識別名稱",
    "email": "E-mail",
    "phone": "聯絡電話",
    "address": "連絡住址",
    # password
    "pw_title": "網站密碼修改",
    "pw_forced": "您使用密碼單上的密碼登入，請先設定新的網站密碼，才能使用其他功能。",
    "pw_old_hint": "請輸入目前網站密碼",
    "pw_old": "舊密碼",
    "pw_new_hint": "請設定新網站密碼，密碼長度 {min}~{max} 個字",
    "pw_new": "新密碼",
    "pw_again": "再確認",
    "pw_submit": "確認變更",
    "pw_done": "密碼更改成功。",
    "pw_err_length": "新密碼長度須為 {min}~{max} 個字。",
    "pw_err_mismatch": "兩次輸入的新密碼不一致。",
    "pw_err_same": "新密碼不可與舊密碼相同。",
    "pw_err_old": "舊密碼不正確。",
    "pw_err_policy": "新密碼不符合規則。",
    # apply
    "apply_title": "憑證申請",
    "apply_intro": "請確認下列註冊資料是否正確，詳讀約定條款後勾選同意，"
                   "再選擇憑證用途並按「確定」。"
                   "金鑰對將在本瀏覽器中產生，私密金鑰不會傳送到伺服器。",
    "terms": "用戶約定條款",
    "terms_accept": "我已讀過並接受用戶約定條款",
    "usage": "憑證用途",
    "usage_signing": "簽章憑證",
    "usage_encryption": "加密憑證",
    "key_alg": "金鑰演算法",
    "alg_rsa": "RSA 2048 位元（預設）",
    "alg_ec": "ECDSA P-256",
    "submit": "確定",
    "working": "處理中，請勿關閉瀏覽器…",
    "apply_done": "您已完成憑證申請作業，請執行憑證下載。",
    "go_download": "前往憑證下載",
    "err_terms": "請先勾選「我已讀過並接受用戶約定條款」。",
    "err_no_usage": "您沒有可申請的憑證用途。",
    "err_already_has_valid": "此用途已有有效憑證，請改用憑證展期(更新)。",
    "err_usage_not_allowed": "註冊資料未開放此憑證用途。",
    "err_signer_unavailable": "簽發系統暫時忙碌，請稍後再試。",
    "err_no_webcrypto": "此瀏覽器不支援產生金鑰所需的 Web Crypto 功能。",
    # download
    "dl_title": "憑證下載",
    "dl_intro": "請勾選要下載的憑證並按「確定下載」。下載必須在申請憑證的同一個瀏覽器中進行，"
                "憑證才能與私密金鑰配對。",
    "dl_submit": "確定下載",
    "dl_none": "目前沒有可下載的憑證。",
    "dl_done": "憑證下載完成，已與本瀏覽器中的私密金鑰配對。",
    "dl_nokey": "憑證已下載，但本瀏覽器中找不到對應的私密金鑰。"
                "請在原電腦匯出備份後於此「匯入復原」。",
    "dl_pick": "請先勾選憑證。",
    "backup_urge": "請立即匯出備份：將私密金鑰與憑證存成受密碼保護的 PKCS#12 檔並妥善保管，"
                   "更換電腦或金鑰毀損時才能復原。",
    # backup / import
    "export": "匯出備份",
    "export_title": "私密金鑰與憑證匯出備份",
    "export_cert": "要備份的憑證",
    "export_pw": "備份檔保護密碼",
    "export_pw2": "再確認",
    "export_format": "檔案格式",
    "fmt_modern": "AES-256 + PBKDF2（建議）",
    "fmt_legacy": "舊式 3DES + SHA-1（相容舊系統）",
    "fmt_legacy_note": "舊式格式的加密強度較弱，請只在舊系統無法讀取建議格式時選用。"
                       "此格式只支援 RSA 金鑰；ECDSA 金鑰只能以 AES-256 格式匯出。",
    "fmt_legacy_ec": "所選憑證的金鑰為 ECDSA，只能以 AES-256 格式匯出。",
    "err_legacy_rsa_only": "舊式 3DES 格式只支援 RSA 金鑰，請改選 AES-256 格式。",
    "export_done": "備份檔已產生，請妥善保管檔案並牢記密碼。",
    "export_err_pw": "保護密碼至少 8 個字，且兩次輸入須一致。",
    "import_title": "憑證匯入復原",
    "import_intro": "更換電腦或瀏覽器時，請選擇先前匯出的 PKCS#12 備份檔並輸入保護密碼，"
                    "私密金鑰與憑證將存入本瀏覽器，之後即可在此展期。",
    "import_file": "備份檔 (.p12)",
    "import_pw": "保護密碼",
    "import_submit": "匯入",
    "import_done": "匯入成功：",
    "import_err": "無法讀取備份檔：密碼錯誤或檔案格式不支援。",
    # renew
    "renew_title": "憑證展期(更新)",
    "renew_intro": "憑證到期前 {days} 天內可線上展期。"
                   "請確認註冊資料、勾選要展期的憑證並接受約定條款。"
                   "本瀏覽器中的舊私密金鑰將簽署展期請求，並產生新的金鑰對。",
    "renew_table": "可展期憑證",
    "renew_none": "目前沒有可展期的憑證。",
    "renew_done": "您已完成憑證更新作業，請執行憑證下載。",
    "renew_pick": "請先勾選要展期的憑證。",
    "renew_nokey": "本瀏覽器中找不到此憑證的私密金鑰，請先「匯入復原」備份檔。",
    "err_not_renewable": "此憑證目前不可展期。",
    "err_bad_challenge": "展期驗證已逾時，請重試。",
    "err_pop_failed": "金鑰驗證失敗。",
    "err_key_reuse": "新金鑰不可與舊金鑰相同。",
    # columns
    "c_id": "憑證編號",
    "c_cn": "用戶識別名稱",
    "c_serial": "憑證序號",
    "c_status": "憑證狀態",
    "c_usage": "憑證用途",
    "c_from": "有效起始日",
    "c_to": "有效截止日",
    "c_subject": "憑證主旨",
    "c_issuer": "簽發者主旨",
    "c_key": "本瀏覽器金鑰",
    "c_action": "作業",
    "yes": "有",
    "no": "無",
    "st_issued": "待下載",
    "st_valid": "有效",
    "st_expiring": "即將到期",
    "st_expired": "已過期",
    "st_superseded": "已更新",
    "st_revoked": "已廢止",
    # info / revoke
    "info_title": "檢視憑證資訊",
    "info_none": "您目前沒有憑證。",
    "show_pem": "顯示憑證 (PEM)",
    "revoke_title": "憑證廢止",
    "revoke_when": "下列情形須申請廢止憑證：憑證有效期間內註冊資料"
                   "（例如公司名稱、統一編號）有變更；"
                   "或私密金鑰有毀損、遺失、外洩、遭竄改或可能被他人使用。",
    "revoke_how": "廢止須由註冊窗口 (RA) 辦理：請填寫憑證廢止申請單，郵寄或臨櫃送交註冊窗口；"
                  "審核通過後由註冊窗口廢止憑證，廢止後立即生效且無法回復。",
    "revoke_list": "您的憑證",
    # RA
    "ra_login_title": "註冊窗口人員登入",
    "ra_login": "登入帳號",
    "ra_m_register": "註冊用戶",
    "ra_m_search": "查詢用戶",
    "ra_m_audit": "稽核紀錄",
    "ra_register_title": "註冊用戶並列印密碼單",
    "ra_cn_hint": "例：A123456789-63-YIRU",
    "ra_ou": "組織單位 (OU，以逗號分隔)",
    "ra_o": "組織 (O)",
    "ra_c": "國別 (C)",
    "ra_usages": "可申請用途",
    "ra_register_submit": "註冊",
    "ra_dup": "身分證號/統編或用戶識別名稱已註冊。",
    "ra_invalid": "欄位內容不正確：",
    "slip_title": "憑證作業網站帳號密碼單",
    "slip_reset_title": "憑證作業網站密碼重設單",
    "slip_account": "網站帳號",
    "slip_password": "初始密碼",
    "slip_url": "網站位址",
    "slip_printed": "列印時間",
    "slip_note1": "本單僅交付用戶本人，請妥善保管。",
    "slip_note2": "首次登入後系統會要求立即變更密碼。",
    "slip_note3": "連續三次密碼錯誤將鎖定帳號，須洽註冊窗口重設。",
    "print": "列印",
    "ra_search_title": "查詢用戶",
    "ra_q": "關鍵字（身分證號、帳號、姓名、識別名稱或 E-mail）",
    "ra_search": "查詢",
    "ra_none": "查無資料。",
    "ra_view": "檢視",
    "ra_subscriber_title": "用戶資料",
    "ra_state": "帳號狀態",
    "ra_locked": "已鎖定",
    "ra_active": "正常",
    "ra_failed": "連續錯誤次數",
    "ra_must_change": "須變更密碼",
    "ra_reset": "重設密碼 / 解除鎖定",
    "ra_reset_confirm": "確定要重設此用戶的密碼？舊密碼將失效。",
    "ra_revoke": "廢止",
    "ra_reason": "廢止原因",
    "ra_revoke_confirm": "確定要廢止此憑證？廢止後無法回復。",
    "ra_revoked_done": "憑證已廢止。",
    "ra_audit_title": "稽核紀錄",
    "ra_more": "下一頁",
    "a_id": "編號",
    "a_at": "時間 (UTC)",
    "a_actor": "執行者",
    "a_action": "動作",
    "a_target": "對象",
    "a_details": "內容",
    "r_unspecified": "未指定",
    "r_keyCompromise": "金鑰洩漏",
    "r_affiliationChanged": "資料異動",
    "r_superseded": "已被取代",
    "r_cessationOfOperation": "停止使用",
    "r_privilegeWithdrawn": "撤銷權限",
}

EN: dict[str, str] = {
    "site": "Certificate Operations Portal",
    "ra_site": "Registration Authority (RA) Portal",
    "lang_other": "中文",
    "home": "Home",
    "logout": "Log out",
    "menu": "Menu",
    "noscript": "This site needs JavaScript.",
    "m_apply": "Apply for a certificate",
    "m_renew": "Renew a certificate",
    "m_download": "Download certificates",
    "m_revoke": "Revoke a certificate",
    "m_info": "View certificates",
    "m_password": "Change portal password",
    "m_import": "Import a backup",
    "login_title": "Log in",
    "account": "Account",
    "password": "Password",
    "captcha": "Verification code",
    "captcha_refresh": "New image",
    "captcha_alt": "verification code image",
    "login": "Log in",
    "login_hint": "Enter the account and password from your password slip and the code in the "
                  "image.",
    "err_invalid_credentials": "Wrong account or password. Three failures in a row lock the "
                               "account.",
    "err_invalid_captcha": "Wrong or expired verification code; type the code of the new image.",
    "err_account_locked": "The account is locked after three wrong passwords. Fill in the "
                          "password reset form and bring your ID to the registration authority "
                          "(RA); log in with the new password slip it gives you.",
    "err_network": "The server cannot be reached; try again later.",
    "err_rate_limited": "Too many attempts; wait a moment and try again.",
    "err_busy": "The server is busy; try again shortly.",
    "err_generic": "The operation failed: ",
    "err_session": "Your session ended; please log in again.",
    "home_title": "Welcome to the certificate operations portal",
    "home_text": "Choose a task in the menu on the left. First apply for a certificate, then "
                 "download it, then export a backup at once.",
    "reg_data": "Registration data",
    "id_number": "ID or company number",
    "name": "Name",
    "subscriber_name": "Subscriber identifier",
    "email": "E-mail",
    "phone": "Phone",
    "address": "Address",
    "pw_title": "Change portal password",
    "pw_forced": "You logged in with the password from your slip; set a new portal password "
                 "before anything else.",
    "pw_old_hint": "Enter your current portal password",
    "pw_old": "Current password",
    "pw_new_hint": "Choose a new portal password of {min} to {max} characters",
    "pw_new": "New password",
    "pw_again": "Repeat new password",
    "pw_submit": "Change password",
    "pw_done": "The password was changed.",
    "pw_err_length": "The new password must have {min} to {max} characters.",
    "pw_err_mismatch": "The two new passwords differ.",
    "pw_err_same": "The new password must differ from the current one.",
    "pw_err_old": "The current password is wrong.",
    "pw_err_policy": "The new password does not meet the rules.",
    "apply_title": "Apply for a certificate",
    "apply_intro": "Check your registration data, read the terms and accept them, choose the "
                   "usage and press OK. The key pair is made in this browser; the private key is "
                   "never sent to the server.",
    "terms": "Terms of use",
    "terms_accept": "I have read and accept the terms of use",
    "usage": "Usage",
    "usage_signing": "Signing certificate",
    "usage_encryption": "Encryption certificate",
    "key_alg": "Key algorithm",
    "alg_rsa": "RSA 2048 bits (default)",
    "alg_ec": "ECDSA P-256",
    "submit": "OK",
    "working": "Working; do not close the browser…",
    "apply_done": "Your application is complete. Now download the certificate.",
    "go_download": "Go to Download certificates",
    "err_terms": "Accept the terms of use first.",
    "err_no_usage": "No certificate usage is open to you.",
    "err_already_has_valid": "You already hold a valid certificate of this usage; renew it "
                             "instead.",
    "err_usage_not_allowed": "Your registration does not allow this usage.",
    "err_signer_unavailable": "The signing system is busy; try again later.",
    "err_no_webcrypto": "This browser lacks the Web Crypto functions needed to make keys.",
    "dl_title": "Download certificates",
    "dl_intro": "Tick the certificate to download and press Download. Download in the browser "
                "you applied with, so the certificate meets its private key.",
    "dl_submit": "Download",
    "dl_none": "There is nothing to download.",
    "dl_done": "Download complete; the certificate is paired with the private key in this "
               "browser.",
    "dl_nokey": "The certificate was downloaded, but its private key is not in this browser. "
                "Export a backup on the original computer and import it here.",
    "dl_pick": "Tick a certificate first.",
    "backup_urge": "Export a backup now: save the private key and certificate as a "
                   "password-protected PKCS#12 file and keep it safe; it is the only way to "
                   "restore them on another computer or after a loss.",
    "export": "Export backup",
    "export_title": "Export key and certificate",
    "export_cert": "Certificate to back up",
    "export_pw": "Backup password",
    "export_pw2": "Repeat password",
    "export_format": "File format",
    "fmt_modern": "AES-256 + PBKDF2 (recommended)",
    "fmt_legacy": "Legacy 3DES + SHA-1 (for older systems)",
    "fmt_legacy_note": "The legacy format is weaker; choose it only when an older system cannot "
                       "read the recommended one. It holds RSA keys only: ECDSA keys export in "
                       "the AES-256 format alone.",
    "fmt_legacy_ec": "The key of the chosen certificate is ECDSA: it can only be exported in "
                     "the AES-256 format.",
    "err_legacy_rsa_only": "The legacy 3DES format supports RSA keys only; choose AES-256.",
    "export_done": "The backup file was created; keep it safe and remember the password.",
    "export_err_pw": "The password needs at least 8 characters and both entries must match.",
    "import_title": "Import a backup",
    "import_intro": "On a new computer or browser, choose the PKCS#12 backup you exported and "
                    "enter its password; the key and certificate are stored in this browser and "
                    "can be renewed here.",
    "import_file": "Backup file (.p12)",
    "import_pw": "Password",
    "import_submit": "Import",
    "import_done": "Imported: ",
    "import_err": "The backup cannot be read: wrong password or unsupported format.",
    "renew_title": "Renew a certificate",
    "renew_intro": "A certificate can be renewed online in the {days} days before it expires. "
                   "Check your data, tick the certificate and accept the terms. The old private "
                   "key in this browser signs the request and a new key pair is made.",
    "renew_table": "Renewable certificates",
    "renew_none": "No certificate can be renewed now.",
    "renew_done": "The renewal is complete. Now download the new certificate.",
    "renew_pick": "Tick the certificate to renew first.",
    "renew_nokey": "The private key of this certificate is not in this browser; import its "
                   "backup first.",
    "err_not_renewable": "This certificate cannot be renewed now.",
    "err_bad_challenge": "The renewal check expired; try again.",
    "err_pop_failed": "The key check failed.",
    "err_key_reuse": "The new key must differ from the old one.",
    "c_id": "Certificate no.",
    "c_cn": "Subscriber identifier",
    "c_serial": "Serial number",
    "c_status": "Status",
    "c_usage": "Usage",
    "c_from": "Valid from",
    "c_to": "Valid until",
    "c_subject": "Subject",
    "c_issuer": "Issuer",
    "c_key": "Key in this browser",
    "c_action": "Action",
    "yes": "yes",
    "no": "no",
    "st_issued": "Ready to download",
    "st_valid": "Valid",
    "st_expiring": "Expiring soon",
    "st_expired": "Expired",
    "st_superseded": "Renewed",
    "st_revoked": "Revoked",
    "info_title": "View certificates",
    "info_none": "You have no certificates.",
    "show_pem": "Show certificate (PEM)",
    "revoke_title": "Revoke a certificate",
    "revoke_when": "Ask for revocation when your registration data (company name, number, …) "
                   "changes while the certificate is valid, or when the private key may be "
                   "damaged, lost, disclosed, altered or used by someone else.",
    "revoke_how": "The registration authority (RA) revokes certificates: send the revocation "
                  "form by mail or bring it to the RA desk. After checking it the RA revokes "
                  "the certificate; this takes effect at once and cannot be undone.",
    "revoke_list": "Your certificates",
    "ra_login_title": "RA officer login",
    "ra_login": "Login",
    "ra_m_register": "Register a subscriber",
    "ra_m_search": "Find a subscriber",
    "ra_m_audit": "Audit log",
    "ra_register_title": "Register a subscriber and print the password slip",
    "ra_cn_hint": "e.g. A123456789-63-YIRU",
    "ra_ou": "Organizational units (OU, comma separated)",
    "ra_o": "Organization (O)",
    "ra_c": "Country (C)",
    "ra_usages": "Allowed usages",
    "ra_register_submit": "Register",
    "ra_dup": "This ID number or subscriber identifier is already registered.",
    "ra_invalid": "Invalid field: ",
    "slip_title": "Certificate portal account slip",
    "slip_reset_title": "Certificate portal password reset slip",
    "slip_account": "Portal account",
    "slip_password": "Initial password",
    "slip_url": "Portal address",
    "slip_printed": "Printed at",
    "slip_note1": "Hand this slip to the subscriber in person only.",
    "slip_note2": "The portal asks for a new password at the first login.",
    "slip_note3": "Three wrong passwords in a row lock the account until the RA resets it.",
    "print": "Print",
    "ra_search_title": "Find a subscriber",
    "ra_q": "Search (ID number, account, name, identifier or e-mail)",
    "ra_search": "Search",
    "ra_none": "Nothing found.",
    "ra_view": "View",
    "ra_subscriber_title": "Subscriber",
    "ra_state": "Account state",
    "ra_locked": "Locked",
    "ra_active": "Active",
    "ra_failed": "Failed attempts",
    "ra_must_change": "Must change password",
    "ra_reset": "Reset password / unlock",
    "ra_reset_confirm": "Reset this subscriber's password? The old one stops working.",
    "ra_revoke": "Revoke",
    "ra_reason": "Reason",
    "ra_revoke_confirm": "Revoke this certificate? This cannot be undone.",
    "ra_revoked_done": "The certificate was revoked.",
    "ra_audit_title": "Audit log",
    "ra_more": "Next page",
    "a_id": "No.",
    "a_at": "Time (UTC)",
    "a_actor": "Actor",
    "a_action": "Action",
    "a_target": "Target",
    "a_details": "Details",
    "r_unspecified": "Unspecified",
    "r_keyCompromise": "Key compromise",
    "r_affiliationChanged": "Affiliation changed",
    "r_superseded": "Superseded",
    "r_cessationOfOperation": "Cessation of operation",
    "r_privilegeWithdrawn": "Privilege withdrawn",
}

MESSAGES = {"zh-TW": ZH, "en": EN}
assert set(ZH) == set(EN), set(ZH) ^ set(EN)

# texts the browser code shows after the page loaded (errors, results, table cells)
JS_KEYS = tuple(k for k in ZH if k.startswith(("err_", "st_", "pw_", "r_", "c_", "usage_")))
JS_KEYS += (
    "apply_done", "go_download", "working", "dl_done", "dl_nokey", "dl_pick", "dl_none",
    "backup_urge", "export", "export_done", "export_err_pw", "import_done", "import_err",
    "renew_done", "renew_pick", "renew_nokey", "renew_none", "info_none", "show_pem", "yes",
    "no", "ra_dup", "ra_invalid", "ra_none", "ra_view", "ra_locked", "ra_active",
    "ra_reset_confirm", "ra_revoke", "ra_revoke_confirm", "ra_revoked_done", "ra_more",
    "captcha_alt", "m_download", "export_pw", "export_pw2", "export_format", "fmt_modern",
    "fmt_legacy", "fmt_legacy_note", "fmt_legacy_ec", "export_title", "submit", "ra_reason",
    "slip_title", "slip_reset_title",
    "terms_accept",
)


def pick(requested: str | None, cookie: str | None) -> str:
    for candidate in (requested, cookie):
        if candidate in MESSAGES:
            return candidate  # type: ignore[return-value]
    return DEFAULT


def translator(lang: str):
    table = MESSAGES[lang]

    def t(key: str, **fmt: object) -> str:
        text = table[key]
        return text.format(**fmt) if fmt else text

    return t


def js_messages(lang: str) -> dict[str, str]:
    table = MESSAGES[lang]
    return {k: table[k] for k in JS_KEYS}
