import { render } from "preact";
import { App } from "./app";
import { currentLanguage } from "./i18n";
import "./style.css";

document.documentElement.lang = currentLanguage();
render(<App />, document.getElementById("app")!);
