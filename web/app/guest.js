// /r/{room_id}: a patient or guest joins a visit by name and knocks. A provider of the
// visit's practice, signed in in this browser, is offered to join as host instead.

import { savedSession } from "../sdk/visitroom.js";
import { offerOnGuestPage } from "./hostoffer.js";
import { roomIdFromPath, runVisit } from "./visit.js";

const roomId = roomIdFromPath();
const resuming = savedSession(roomId)?.role === "guest";
if (resuming || !(await offerOnGuestPage(roomId))) runVisit({ roomId, role: "guest" });
