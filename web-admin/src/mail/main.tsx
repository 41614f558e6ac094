import { render } from "preact";
import { currentLanguage } from "../i18n";
import { MailApp } from "./app";
import "../style.css";
import "./mail.css";

document.documentElement.lang = currentLanguage();
render(<MailApp />, document.getElementById("app")!);
