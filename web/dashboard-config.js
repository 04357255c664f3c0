/**
 * dashboard-config.js: THE one place an operator fills for a deployed page (docs/client.md,
 * "Sign-in").
 *
 * `firebase`: the web app's config from the Firebase console (Project settings, General, Your
 * apps, SDK setup and configuration, "Config"). Leave `apiKey` empty when Firebase Hosting
 * serves the page: it then reads Hosting's `/__/firebase/init.json`; on the local stack
 * (`make dev`) the stack serves that file too, pointing the page at its emulators.
 * `providers`: the sign-in methods the page offers, in order: 'google' (the Google popup) and
 * 'password' (email and password). Turn the same ones on in the console (Authentication,
 * Sign-in method).
 */
export default {
  firebase: {
    apiKey: '',
    authDomain: '', // PROJECT.firebaseapp.com, or the page's own domain behind Hosting
    projectId: '',
    appId: '',
  },
  providers: ['google', 'password'],
};
