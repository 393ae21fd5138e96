// The chat page's script (ES modules, no build step): wires the message box, the exchange, the
// socket and the estimate together. See the modules for each part.
import { wireActions } from "./actions.js";
import { wireComposer } from "./composer.js";
import { refreshEstimate } from "./estimate.js";
import { connectionDropped, handleEvent, isBusy, signedOut, startExchange, stopExchange } from "./exchange.js";
import { wireModelSearch } from "./model-search.js";
import { wireSidebar } from "./sidebar.js";
import { connect } from "./socket.js";
import { scrollDown } from "./transcript.js";

wireComposer({ isBusy, start: startExchange, stop: stopExchange });
wireActions({ isBusy, start: startExchange });
wireModelSearch();

wireSidebar();

refreshEstimate();
scrollDown();
connect({ onEvent: handleEvent, onDrop: connectionDropped, onSignedOut: signedOut });
