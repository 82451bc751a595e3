/** Kept in step with package.json by test/version.test.ts; a constant so start-up reads no file. */
export const VERSION = '0.1.0';
