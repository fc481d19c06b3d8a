// Entry point of the portal bundle: runs the code of the page named by <body data-page>.
import * as ra from "./ra.js";
import * as subscriber from "./subscriber.js";

document.documentElement.classList.add("js");  // the narrow-screen menu folds only with script
const name = document.body.dataset.page;
if (document.body.dataset.area === "ra") ra.start(name);
else subscriber.start(name);
