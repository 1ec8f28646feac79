"""The languages text-to-speech speaks, and the built-in words of an
acknowledged call (the prompt after the message, the confirmation after 1)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_TEXT = 1000  # characters of `text` (and of a text prompt): about a minute of speech
DEFAULT_LANGUAGE = "en"
ACK_KEY = "1"


@dataclass(frozen=True)
class Language:
    voice: str         # the speech engine's voice (espeak-ng -v)
    prompt: str        # played after the message: asks for the key
    confirmation: str  # played after the key, before the call ends


LANGUAGES: dict[str, Language] = {
    "en": Language("en", "Press 1 to confirm that you have received this message.",
                   "Thank you. Your confirmation has been received. Goodbye."),
    "sv": Language("sv", "Tryck 1 för att bekräfta att du har tagit emot meddelandet.",
                   "Tack. Din bekräftelse har tagits emot. Hej då."),
    "da": Language("da", "Tryk 1 for at bekræfte, at du har modtaget beskeden.",
                   "Tak. Din bekræftelse er modtaget. Farvel."),
    "nb": Language("nb", "Trykk 1 for å bekrefte at du har mottatt meldingen.",
                   "Takk. Bekreftelsen din er mottatt. Ha det."),
    "fi": Language("fi", "Paina 1 vahvistaaksesi, että olet saanut viestin.",
                   "Kiitos. Vahvistuksesi on vastaanotettu. Näkemiin."),
    "de": Language("de", "Drücken Sie 1, um den Empfang dieser Nachricht zu bestätigen.",
                   "Danke. Ihre Bestätigung ist eingegangen. Auf Wiederhören."),
    "fr": Language("fr", "Appuyez sur 1 pour confirmer que vous avez reçu ce message.",
                   "Merci. Votre confirmation a été reçue. Au revoir."),
    "es": Language("es", "Pulse 1 para confirmar que ha recibido este mensaje.",
                   "Gracias. Su confirmación ha sido recibida. Adiós."),
}
