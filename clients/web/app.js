// The explorer's entry point: which page each path shows.

import { route, start } from "./router.js";
import { searchPage } from "./pages/search.js";
import { featurePage } from "./pages/feature.js";
import { familyPage } from "./pages/family.js";
import { saePage, saesPage } from "./pages/sae.js";

route(/^\/(search)?$/, searchPage);
route(/^\/saes\/?$/, saesPage);
route(/^\/saes\/([^/]+)\/features\/(\d+)\/?$/, featurePage);
route(/^\/saes\/([^/]+)\/families\/([^/]+)\/?$/, familyPage);
route(/^\/saes\/([^/]+)\/?$/, saePage);

start();
