"""Spoken digits for the audio captcha, rendered server-side by espeak-ng (Debian's
``espeak-ng``, installed by scripts/bootstrap.sh) into a WAV file.

The digits go to espeak-ng on its standard input, never on its command line (another local
user could read argv from /proc). espeak-ng writes a streaming WAV header (unknown length) to
stdout; the stdlib ``wave`` module reads its frames and writes a file with correct sizes, which
every browser plays.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

ESPEAK = "espeak-ng"
# the page's language -> espeak-ng voice: Mandarin digits for the zh-TW page (三、四、七 ...)
VOICES = {"zh-TW": "cmn", "en": "en"}
TIMEOUT = 10.0


class SpeechUnavailable(RuntimeError):
    """espeak-ng is missing or failed: the audio alternative cannot be offered."""


def available() -> bool:
    return shutil.which(ESPEAK) is not None


def digits_wav(digits: str, lang: str) -> bytes:
    """``digits`` spoken one by one, slowly, with a pause between them, as a WAV file."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("only digits are spoken")
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise SpeechUnavailable(f"{ESPEAK} is not installed")
    text = ", ".join(digits) + "."  # the commas make espeak-ng pause between the digits
    try:
        done = subprocess.run(
            [exe, "--stdout", "--stdin", "-v", VOICES.get(lang, "en"), "-s", "120", "-g", "12"],
            input=text.encode(),
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SpeechUnavailable(f"{ESPEAK} failed: {exc}") from exc
    try:
        with wave.open(io.BytesIO(done.stdout), "rb") as src:
            params = src.getparams()
            frames = src.readframes(src.getnframes())
    except (wave.Error, EOFError) as exc:
        raise SpeechUnavailable(f"{ESPEAK} wrote no WAV: {exc}") from exc
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setnchannels(params.nchannels)
        dst.setsampwidth(params.sampwidth)
        dst.setframerate(params.framerate)
        dst.writeframes(frames)
    return out.getvalue()
