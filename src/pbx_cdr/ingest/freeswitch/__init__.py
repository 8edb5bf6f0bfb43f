"""FreeSWITCH mod_json_cdr: one POST per call leg in, one call out. Pure functions only.

- :mod:`.body`: every body mod_json_cdr can send (raw JSON, ``cdr=`` URL-encoded or base64, the
  files of ``log-dir`` and ``err-log-dir``) to the leg's JSON, whatever the Content-Type says;
- :mod:`.leg`: that JSON to a :class:`~.leg.Leg` (variables decoded exactly once, the current
  ``callflow`` array and the repeated keys of versions before 1.6);
- :mod:`.mapping`: what each field of the call is, read from the legs;
- :mod:`.fold`: the legs of one call (A-leg, B-legs, agent and transfer legs) folded into one
  :class:`~pbx_cdr.domain.call.Call`, the same whatever order they arrived in.

Storing legs and re-deriving their call is :mod:`.service`, the only module here that touches the
database (through ``db/queries``).
"""

from __future__ import annotations

from pbx_cdr.ingest.freeswitch.body import UndecodableBody, decode_body, load_leg_json
from pbx_cdr.ingest.freeswitch.fold import fold_call
from pbx_cdr.ingest.freeswitch.leg import InvalidLeg, Leg, parse_leg, read_leg

__all__ = [
    "InvalidLeg",
    "Leg",
    "UndecodableBody",
    "decode_body",
    "fold_call",
    "load_leg_json",
    "parse_leg",
    "read_leg",
]
