// /r/{room_id}: a patient or guest joins a visit by name and knocks.

import { roomIdFromPath, runVisit } from "./visit.js";

runVisit({ roomId: roomIdFromPath(), role: "guest" });
