// The chat page's script (ES modules, no build step): wires the message box, the exchange, the
// socket and the estimate together. See the modules for each part.
import { wireActions } from "./actions.js";
import { wireAttachments } from "./attachments.js";
import { restoreDraft, wireComposer } from "./composer.js";
import { showConnection, wireConnection } from "./connection.js";
import { refreshEstimate } from "./estimate.js";
import { connectionDropped, connectionOpened, handleEvent, isBusy, signedOut, startExchange, stopExchange }
  from "./exchange.js";
import { wireModelSearch } from "./model-search.js";
import { addCopyButtons } from "./render.js";
import { wireSettings } from "./settings.js";
import { wireSidebar } from "./sidebar.js";
import { connect, retryNow } from "./socket.js";
import { scrollDown } from "./transcript.js";

wireComposer({ isBusy, start: startExchange, stop: stopExchange });
restoreDraft(new Set(Array.from(document.querySelectorAll("#transcript .message-user[data-message-id]"),
  (node) => node.getAttribute("data-message-id"))));
wireActions({ isBusy, start: startExchange });
wireModelSearch();
addCopyButtons(document.getElementById("transcript"));

wireSidebar();
wireConnection(retryNow);
wireSettings();
wireAttachments({ isBusy });

refreshEstimate();
scrollDown();
connect({ onEvent: handleEvent, onOpen: connectionOpened, onDrop: connectionDropped, onSignedOut: signedOut,
  onState: showConnection });
